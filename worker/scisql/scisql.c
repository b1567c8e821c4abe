/*
 * Skyshard scisql: the subset of the scisql MariaDB UDF library that Skyshard
 * (like Qserv) relies on, as one self-contained shared library
 * (libskyshard_scisql.so).
 *
 * The semantics -- argument coercion, NULL handling, out-of-range handling,
 * numeric formulas and constants -- follow lsst/scisql (Serge Monkewitz,
 * IPAC/Caltech; Fritz Mueller, SLAC; Apache License 2.0):
 *   src/geometry.h, src/geometry.c    spherical coordinates, angular
 *                                     separation, convex polygons
 *   src/photometry.h                  AB magnitude <-> flux conversions
 *   src/udfs/angSep.c, s2PtInBox.c, s2PtInCircle.c, s2PtInEllipse.c,
 *   s2PtInCPoly.c, s2CPolyToBin.c, fluxToAbMag.c, fluxToAbMagSigma.c,
 *   abMagToFlux.c, abMagToFluxSigma.c, nanojanskyToAbMag*.c,
 *   abMagToNanojansky*.c              the UDF entry points
 * This is an independent re-implementation written for Skyshard, not a copy
 * of those files; docs/scisql.md lists every function and the (few, deliberate)
 * deviations from scisql, which are also marked "DEVIATION" below.
 *
 * Summary of the conventions (identical to scisql):
 *   - Every numeric argument is coerced to DOUBLE (REAL_RESULT) by the server.
 *   - Angles are in degrees, except the ellipse semi-axes (arcseconds).
 *   - scisql_s2PtIn*(): INTEGER 1/0.  Any NULL argument -> 0 (not NULL!).
 *     A latitude outside [-90, 90], a NaN/Inf coordinate or an invalid region
 *     parameter -> NULL.
 *   - scisql_angSep(): DOUBLE.  Any NULL argument, a non-finite value or a
 *     latitude outside [-90, 90] -> NULL.
 *   - Photometry: DOUBLE.  NULL/NaN/Inf arguments, flux <= 0 (where a flux is
 *     an input), a negative sigma, or a non-finite result -> NULL.
 *   - A wrong number of arguments makes the xxx_init() function fail, so the
 *     statement fails with ER_CANT_INITIALIZE_UDF.
 *
 * Build: gcc -shared -fPIC -O2 $(mariadb_config --include) scisql.c \
 *            -o libskyshard_scisql.so -lm
 * (worker/scisql/__init__.py does this; the headers come from the Debian
 * package libmariadb-dev.)
 */

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#if defined(__GNUC__)
#define SKY_API __attribute__((visibility("default")))
#define SKY_UNUSED __attribute__((unused))
#else
#define SKY_API
#define SKY_UNUSED
#endif

/* Set to 0 to reproduce scisql's s2PtInEllipse() exactly, including its
   false positives near the antipode of the ellipse centre (see below). */
#ifndef SKYSHARD_ELLIPSE_HEMISPHERE_GUARD
#define SKYSHARD_ELLIPSE_HEMISPHERE_GUARD 1
#endif

/* ---- Constants (values as in scisql geometry.h / photometry.h) ---------- */

#define SCISQL_DEG_PER_RAD 57.2957795130823208767981548141
#define SCISQL_RAD_PER_DEG 0.0174532925199432957692369076849
#define SCISQL_ARCSEC_PER_DEG 3600.0
#define SCISQL_MAX_VERTS 20

/* 2.5 / ln(10): d(mag) = SCISQL_5_OVER_2LOG10 * d(flux) / flux */
#define SCISQL_5_OVER_2LOG10 1.085736204758129569
/* ln(10) / 2.5: d(flux) = SCISQL_2LOG10_OVER_5 * flux * d(mag) */
#define SCISQL_2LOG10_OVER_5 0.9210340371976182736
/* AB zero points: m_AB = -2.5 log10(f [erg/cm^2/s/Hz]) - 48.6
                        = -2.5 log10(f [nJy]) + 31.4 */
#define SCISQL_AB_ZP_CGS 48.6
#define SCISQL_AB_ZP_NJY 31.4

/* MariaDB's "not fixed" number of decimals for DOUBLE results. */
#define SCISQL_REAL_DECIMALS 31

#define SCISQL_ISSPECIAL(x) (!isfinite(x))

/* ---- Spherical geometry (after scisql src/geometry.{h,c}) --------------- */

typedef struct {
    double x, y, z;
} sky_v3;

/* spherical coordinates in degrees */
typedef struct {
    double lon, lat;
} sky_sc;

/* A convex spherical polygon: n edge-plane normals (pointing inside) and the
   sum of the vertices (used only to orient the normals and for the binary
   form). */
typedef struct {
    size_t n;
    sky_v3 vsum;
    sky_v3 edges[SCISQL_MAX_VERTS];
} sky_cpoly;

/* Range-reduces an angle to [0, 360) degrees. */
static double sky_angred(double angle_deg) {
    double angle = fmod(angle_deg, 360.0);
    if (angle < 0.0) {
        angle += 360.0;
        if (angle == 360.0) {
            angle = 0.0;
        }
    }
    return angle;
}

/* 0 on success; 1 if a coordinate is NaN/Inf or lat is outside [-90, 90]. */
static int sky_sc_init(sky_sc *out, double lon, double lat) {
    if (SCISQL_ISSPECIAL(lon) || SCISQL_ISSPECIAL(lat) || lat < -90.0 || lat > 90.0) {
        return 1;
    }
    out->lon = lon;
    out->lat = lat;
    return 0;
}

/* 0 on success; 1 if a component is NaN/Inf. */
static int sky_v3_init(sky_v3 *out, double x, double y, double z) {
    if (SCISQL_ISSPECIAL(x) || SCISQL_ISSPECIAL(y) || SCISQL_ISSPECIAL(z)) {
        return 1;
    }
    out->x = x;
    out->y = y;
    out->z = z;
    return 0;
}

static double sky_v3_dot(const sky_v3 *a, const sky_v3 *b) {
    return a->x * b->x + a->y * b->y + a->z * b->z;
}

static void sky_v3_add(sky_v3 *out, const sky_v3 *a, const sky_v3 *b) {
    out->x = a->x + b->x;
    out->y = a->y + b->y;
    out->z = a->z + b->z;
}

static void sky_v3_cross(sky_v3 *out, const sky_v3 *a, const sky_v3 *b) {
    double x = a->y * b->z - a->z * b->y;
    double y = a->z * b->x - a->x * b->z;
    double z = a->x * b->y - a->y * b->x;
    out->x = x;
    out->y = y;
    out->z = z;
}

/* Twice the cross product a x b, computed as (b + a) x (b - a), which is
   more accurate for nearby vectors (scisql_v3_rcross). */
static void sky_v3_rcross(sky_v3 *out, const sky_v3 *a, const sky_v3 *b) {
    double x1 = b->x + a->x, x2 = b->x - a->x;
    double y1 = b->y + a->y, y2 = b->y - a->y;
    double z1 = b->z + a->z, z2 = b->z - a->z;
    out->x = y1 * z2 - z1 * y2;
    out->y = z1 * x2 - x1 * z2;
    out->z = x1 * y2 - y1 * x2;
}

static void sky_sctov3(sky_v3 *out, const sky_sc *p) {
    double lon = p->lon * SCISQL_RAD_PER_DEG;
    double lat = p->lat * SCISQL_RAD_PER_DEG;
    double cos_lat = cos(lat);
    out->x = cos(lon) * cos_lat;
    out->y = sin(lon) * cos_lat;
    out->z = sin(lat);
}

/* Squared chord length between two points, from the haversine form
   sin^2(d/2) = sin^2(dlat/2) + cos(lat1) cos(lat2) sin^2(dlon/2),
   with cos(lat1) cos(lat2) = cos^2((lat1 + lat2)/2) - sin^2(dlat/2).
   Clamped to [0, 4]. */
static double sky_sc_dist2(const sky_sc *p1, const sky_sc *p2) {
    double x, y, z, d2;
    x = sin((p1->lon - p2->lon) * SCISQL_RAD_PER_DEG * 0.5);
    x *= x;
    y = sin((p1->lat - p2->lat) * SCISQL_RAD_PER_DEG * 0.5);
    y *= y;
    z = cos((p1->lat + p2->lat) * SCISQL_RAD_PER_DEG * 0.5);
    z *= z;
    d2 = 4.0 * (x * (z - y) + y);
    return d2 < 0.0 ? 0.0 : (d2 > 4.0 ? 4.0 : d2);
}

/* Angular separation in degrees between two spherical coordinate pairs. */
static double sky_sc_angsep(const sky_sc *p1, const sky_sc *p2) {
    double x = sky_sc_dist2(p1, p2) * 0.25;
    double angsep = 2.0 * SCISQL_DEG_PER_RAD * asin(sqrt(x));
    return angsep > 180.0 ? 180.0 : angsep;
}

/* Angular separation in degrees between two vectors of arbitrary norm:
   atan2(|v1 x v2|, v1 . v2).  Two zero vectors give 0. */
static double sky_v3_angsep(const sky_v3 *v1, const sky_v3 *v2) {
    sky_v3 n;
    double ss, cs, angsep;
    sky_v3_cross(&n, v1, v2);
    ss = sqrt(sky_v3_dot(&n, &n));
    cs = sky_v3_dot(v1, v2);
    if (cs == 0.0 && ss == 0.0) {
        return 0.0;
    }
    angsep = atan2(ss, cs) * SCISQL_DEG_PER_RAD;
    return angsep > 180.0 ? 180.0 : angsep;
}

/* Builds a convex polygon from 3..SCISQL_MAX_VERTS unit vertices given in
   either clockwise or counter-clockwise order.  As in scisql, the vertices
   are assumed (not checked) to be hemispherical, to define edges that do not
   intersect except at vertices, and to form a convex polygon.  0 on success. */
static int sky_cpoly_init(sky_cpoly *out, const sky_v3 *verts, size_t n) {
    size_t i;
    if (n < 3 || n > SCISQL_MAX_VERTS) {
        return 1;
    }
    out->n = n;
    out->vsum = verts[n - 1];
    for (i = 0; i < n - 1; ++i) {
        sky_v3_rcross(&out->edges[i], &verts[i], &verts[i + 1]);
        sky_v3_add(&out->vsum, &out->vsum, &verts[i]);
    }
    sky_v3_rcross(&out->edges[n - 1], &verts[n - 1], &verts[0]);
    /* Clockwise vertices give edge normals pointing away from the vertex
       centroid: flip them so that they all point inside. */
    if (sky_v3_dot(&out->vsum, &out->edges[0]) < 0.0) {
        for (i = 0; i < n; ++i) {
            out->edges[i].x = -out->edges[i].x;
            out->edges[i].y = -out->edges[i].y;
            out->edges[i].z = -out->edges[i].z;
        }
    }
    return 0;
}

/* 1 if v is inside or on the boundary of the polygon, 0 otherwise. */
static int sky_cpoly_contains(const sky_cpoly *cp, const sky_v3 *v) {
    size_t i;
    for (i = 0; i < cp->n; ++i) {
        if (sky_v3_dot(v, &cp->edges[i]) < 0.0) {
            return 0;
        }
    }
    return 1;
}

/* Binary form (scisql s2CPolyToBin): 3 little-endian IEEE doubles for the
   vertex sum, then 3 per edge normal; 24 * (N + 1) bytes for N vertices. */
static void sky_put_double(unsigned char *dst, double value) {
    unsigned char bytes[sizeof(double)];
    memcpy(bytes, &value, sizeof(double));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t s = 0; s < sizeof(double); ++s) {
        dst[s] = bytes[sizeof(double) - 1 - s];
    }
#else
    memcpy(dst, bytes, sizeof(double));
#endif
}

static double sky_get_double(const unsigned char *src) {
    unsigned char bytes[sizeof(double)];
    double value;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t s = 0; s < sizeof(double); ++s) {
        bytes[s] = src[sizeof(double) - 1 - s];
    }
#else
    memcpy(bytes, src, sizeof(double));
#endif
    memcpy(&value, bytes, sizeof(double));
    return value;
}

#define SKY_CPOLY_BIN_MAX (3 * sizeof(double) * (SCISQL_MAX_VERTS + 1))

static int sky_cpoly_frombin(sky_cpoly *out, const unsigned char *s, size_t len) {
    size_t i, n;
    if (s == NULL) {
        return 1;
    }
    n = len / (3 * sizeof(double));
    if (n < 4 || n > SCISQL_MAX_VERTS + 1 || n * 3 * sizeof(double) != len) {
        return 1;
    }
    out->n = n - 1;
    out->vsum.x = sky_get_double(s);
    out->vsum.y = sky_get_double(s + 8);
    out->vsum.z = sky_get_double(s + 16);
    s += 24;
    for (i = 0; i < n - 1; ++i, s += 24) {
        out->edges[i].x = sky_get_double(s);
        out->edges[i].y = sky_get_double(s + 8);
        out->edges[i].z = sky_get_double(s + 16);
    }
    return 0;
}

static size_t sky_cpoly_tobin(unsigned char *out, size_t len, const sky_cpoly *cp) {
    size_t i;
    size_t need = (cp->n + 1) * 3 * sizeof(double);
    if (out == NULL || need > len) {
        return 0;
    }
    sky_put_double(out, cp->vsum.x);
    sky_put_double(out + 8, cp->vsum.y);
    sky_put_double(out + 16, cp->vsum.z);
    out += 24;
    for (i = 0; i < cp->n; ++i, out += 24) {
        sky_put_double(out, cp->edges[i].x);
        sky_put_double(out + 8, cp->edges[i].y);
        sky_put_double(out + 16, cp->edges[i].z);
    }
    return need;
}

/* ---- UDF prototypes (the exported symbols) ------------------------------ */

SKY_API my_bool scisql_angSep_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
SKY_API double scisql_angSep(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error);

SKY_API my_bool scisql_s2PtInBox_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
SKY_API long long scisql_s2PtInBox(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error);

SKY_API my_bool scisql_s2PtInCircle_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
SKY_API long long scisql_s2PtInCircle(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                                      char *error);
SKY_API void scisql_s2PtInCircle_deinit(UDF_INIT *initid);

SKY_API my_bool scisql_s2PtInEllipse_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
SKY_API long long scisql_s2PtInEllipse(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                                       char *error);
SKY_API void scisql_s2PtInEllipse_deinit(UDF_INIT *initid);

SKY_API my_bool scisql_s2PtInCPoly_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
SKY_API long long scisql_s2PtInCPoly(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                                     char *error);
SKY_API void scisql_s2PtInCPoly_deinit(UDF_INIT *initid);

SKY_API my_bool scisql_s2CPolyToBin_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
SKY_API char *scisql_s2CPolyToBin(UDF_INIT *initid, UDF_ARGS *args, char *result,
                                  unsigned long *length, char *is_null, char *error);
SKY_API void scisql_s2CPolyToBin_deinit(UDF_INIT *initid);

#define SKY_DECLARE_REAL_UDF(name)                                                        \
    SKY_API my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message);         \
    SKY_API double name(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error);

SKY_DECLARE_REAL_UDF(scisql_fluxToAbMag)
SKY_DECLARE_REAL_UDF(scisql_fluxToAbMagSigma)
SKY_DECLARE_REAL_UDF(scisql_abMagToFlux)
SKY_DECLARE_REAL_UDF(scisql_abMagToFluxSigma)
SKY_DECLARE_REAL_UDF(scisql_nanojanskyToAbMag)
SKY_DECLARE_REAL_UDF(scisql_nanojanskyToAbMagSigma)
SKY_DECLARE_REAL_UDF(scisql_abMagToNanojansky)
SKY_DECLARE_REAL_UDF(scisql_abMagToNanojanskySigma)

/* ---- Shared init helper ------------------------------------------------- */

/* Checks the argument count, asks the server for DOUBLE arguments and sets
   the result flags.  Returns 1 (init failure) on a wrong argument count. */
static my_bool sky_init_reals(UDF_INIT *initid, UDF_ARGS *args, char *message,
                              unsigned int nargs, const char *name) {
    unsigned int i;
    my_bool const_item = 1;
    if (args->arg_count != nargs) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "%s() expects exactly %u argument%s", name,
                 nargs, nargs == 1 ? "" : "s");
        return 1;
    }
    for (i = 0; i < nargs; ++i) {
        args->arg_type[i] = REAL_RESULT;
        if (args->args[i] == NULL) {
            const_item = 0;
        }
    }
    initid->maybe_null = 1;
    initid->const_item = const_item;
    initid->decimals = SCISQL_REAL_DECIMALS;
    initid->ptr = NULL;
    return 0;
}

/* ---- scisql_angSep ------------------------------------------------------ */

/* scisql_angSep(lon1, lat1, lon2, lat2) or
   scisql_angSep(x1, y1, z1, x2, y2, z2) -> DOUBLE degrees in [0, 180].
   NULL if any argument is NULL or non-finite, or (4-argument form) if a
   latitude is outside [-90, 90]. */
SKY_API my_bool scisql_angSep_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    unsigned int i;
    my_bool const_item = 1;
    if (args->arg_count != 4 && args->arg_count != 6) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "scisql_angSep() expects 4 or 6 arguments");
        return 1;
    }
    for (i = 0; i < args->arg_count; ++i) {
        args->arg_type[i] = REAL_RESULT;
        if (args->args[i] == NULL) {
            const_item = 0;
        }
    }
    /* DEVIATION (metadata only): scisql sets maybe_null only when some
       argument may be NULL, although an out-of-range latitude also yields
       NULL; declaring the result nullable is always correct. */
    initid->maybe_null = 1;
    initid->const_item = const_item;
    initid->decimals = SCISQL_REAL_DECIMALS;
    return 0;
}

SKY_API double scisql_angSep(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args, char *is_null,
                             char *error SKY_UNUSED) {
    double **a = (double **)args->args;
    unsigned int i;
    for (i = 0; i < args->arg_count; ++i) {
        if (a[i] == NULL) {
            *is_null = 1;
            return 0.0;
        }
    }
    if (args->arg_count == 4) {
        sky_sc p1, p2;
        if (sky_sc_init(&p1, *a[0], *a[1]) != 0 || sky_sc_init(&p2, *a[2], *a[3]) != 0) {
            *is_null = 1;
            return 0.0;
        }
        return sky_sc_angsep(&p1, &p2);
    } else {
        sky_v3 v1, v2;
        double angsep;
        if (sky_v3_init(&v1, *a[0], *a[1], *a[2]) != 0 ||
            sky_v3_init(&v2, *a[3], *a[4], *a[5]) != 0) {
            *is_null = 1;
            return 0.0;
        }
        angsep = sky_v3_angsep(&v1, &v2);
        /* DEVIATION (pathological input only): components so large that the
           products overflow can make the result NaN; scisql hands the NaN to
           the server, we return NULL. */
        if (isnan(angsep)) {
            *is_null = 1;
            return 0.0;
        }
        return angsep;
    }
}

/* ---- scisql_s2PtInBox --------------------------------------------------- */

/* scisql_s2PtInBox(lon, lat, lonMin, latMin, lonMax, latMax) -> 1/0.
   - any NULL argument -> 0
   - NaN/Inf anywhere, or lat/latMin/latMax outside [-90, 90] -> NULL
   - latMin > latMax -> 0 (empty box)
   - lonMax < lonMin is a box wrapping through lon = 0 only when both lie in
     [0, 360]; otherwise (lonMax < 0 or lonMin > 360) it is an error -> NULL
   - lonMax - lonMin >= 360 -> all longitudes
   - otherwise all longitudes are range-reduced to [0, 360) and the (possibly
     wrapping) interval [lonMin, lonMax] is tested; all bounds inclusive. */
SKY_API my_bool scisql_s2PtInBox_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    if (sky_init_reals(initid, args, message, 6, "scisql_s2PtInBox")) {
        return 1;
    }
    initid->decimals = 0;
    return 0;
}

SKY_API long long scisql_s2PtInBox(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args,
                                   char *is_null, char *error SKY_UNUSED) {
    sky_sc p, bmin, bmax;
    double **a = (double **)args->args;
    int i;
    for (i = 0; i < 6; ++i) {
        if (a[i] == NULL) {
            return 0;
        }
    }
    if (sky_sc_init(&p, *a[0], *a[1]) != 0 || sky_sc_init(&bmin, *a[2], *a[3]) != 0 ||
        sky_sc_init(&bmax, *a[4], *a[5]) != 0) {
        *is_null = 1;
        return 0;
    }
    if (bmax.lon < bmin.lon && (bmax.lon < 0.0 || bmin.lon > 360.0)) {
        *is_null = 1;
        return 0;
    }
    if (bmin.lat > bmax.lat || p.lat < bmin.lat || p.lat > bmax.lat) {
        return 0;
    }
    if (bmax.lon - bmin.lon >= 360.0) {
        return 1;
    }
    p.lon = sky_angred(p.lon);
    bmin.lon = sky_angred(bmin.lon);
    bmax.lon = sky_angred(bmax.lon);
    if (bmin.lon <= bmax.lon) {
        return p.lon >= bmin.lon && p.lon <= bmax.lon;
    }
    return p.lon >= bmin.lon || p.lon <= bmax.lon;
}

/* ---- scisql_s2PtInCircle ------------------------------------------------ */

/* scisql_s2PtInCircle(lon, lat, centerLon, centerLat, radius) -> 1/0.
   - any NULL argument -> 0
   - NaN/Inf, lat/centerLat outside [-90, 90], radius < 0 or > 180 -> NULL
   - inside means angular separation <= radius (boundary included).
   For a constant radius the squared chord length of the radius is cached and
   compared with the squared chord distance (saves asin/sqrt per row). */
typedef struct {
    double dist2;
    int valid;
} sky_dist2_cache;

SKY_API my_bool scisql_s2PtInCircle_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    if (sky_init_reals(initid, args, message, 5, "scisql_s2PtInCircle")) {
        return 1;
    }
    initid->decimals = 0;
    if (args->args[4] != NULL) {
        initid->ptr = (char *)calloc(1, sizeof(sky_dist2_cache));
    }
    return 0;
}

SKY_API long long scisql_s2PtInCircle(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                                      char *error SKY_UNUSED) {
    sky_sc p, cen;
    double r, angle;
    double **a = (double **)args->args;
    int i;
    for (i = 0; i < 5; ++i) {
        if (a[i] == NULL) {
            return 0;
        }
    }
    if (sky_sc_init(&p, *a[0], *a[1]) != 0 || sky_sc_init(&cen, *a[2], *a[3]) != 0) {
        *is_null = 1;
        return 0;
    }
    r = *a[4];
    if (r < 0.0 || r > 180.0 || isnan(r)) {
        *is_null = 1;
        return 0;
    }
    /* fail fast: the latitude difference is a lower bound of the separation */
    if (fabs(p.lat - cen.lat) > r) {
        return 0;
    }
    if (initid->ptr == NULL) {
        angle = sky_sc_angsep(&p, &cen);
    } else {
        sky_dist2_cache *cache = (sky_dist2_cache *)initid->ptr;
        if (cache->valid == 0) {
            double d = sin(r * 0.5 * SCISQL_RAD_PER_DEG);
            cache->dist2 = 4.0 * d * d;
            cache->valid = 1;
        }
        r = cache->dist2;
        angle = sky_sc_dist2(&p, &cen);
    }
    return angle <= r;
}

SKY_API void scisql_s2PtInCircle_deinit(UDF_INIT *initid) {
    free(initid->ptr);
    initid->ptr = NULL;
}

/* ---- scisql_s2PtInEllipse ----------------------------------------------- */

/* scisql_s2PtInEllipse(lon, lat, centerLon, centerLat,
                        semiMajorAxisAngle, semiMinorAxisAngle, positionAngle)
   -> 1/0.  Axes in ARCSECONDS, position angle in degrees east of north
   (the major axis points north for 0 and east for 90).
   - any NULL argument -> 0
   - NaN/Inf, lat/centerLat outside [-90, 90] -> NULL
   - semiMinor < 0, semiMinor > semiMajor, or semiMajor > 36000" (10 deg)
     -> NULL
   The test is scisql's: the point's unit vector is projected orthogonally on
   the tangent plane at the centre, onto the (north, east) basis, rotated by
   the position angle, and (x/M)^2 + (y/m)^2 <= 1 (axes in radians) decides.
   For a constant ellipse the derived quantities are cached. */
typedef struct {
    double sinLon, cosLon; /* ellipse centre longitude */
    double sinLat, cosLat; /* ellipse centre latitude */
    double sinPosAng, cosPosAng;
    double invMinor2; /* 1/m^2, m = semi-minor axis (rad) */
    double invMajor2; /* 1/M^2, M = semi-major axis (rad) */
    int valid;
} sky_ellipse;

SKY_API my_bool scisql_s2PtInEllipse_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    unsigned int i;
    my_bool const_ellipse = 1;
    if (sky_init_reals(initid, args, message, 7, "scisql_s2PtInEllipse")) {
        return 1;
    }
    initid->decimals = 0;
    for (i = 2; i < 7; ++i) {
        if (args->args[i] == NULL) {
            const_ellipse = 0;
        }
    }
    if (const_ellipse) {
        initid->ptr = (char *)calloc(1, sizeof(sky_ellipse));
    }
    return 0;
}

SKY_API long long scisql_s2PtInEllipse(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                                       char *error SKY_UNUSED) {
    sky_ellipse local;
    sky_ellipse *ep;
    sky_sc p, cen;
    sky_v3 v;
    double xne, yne, x, y;
    double **a = (double **)args->args;
    int i;
    for (i = 0; i < 7; ++i) {
        if (a[i] == NULL) {
            return 0;
        }
    }
    if (sky_sc_init(&p, *a[0], *a[1]) != 0) {
        *is_null = 1;
        return 0;
    }
    local.valid = 0;
    ep = (initid->ptr != NULL) ? (sky_ellipse *)initid->ptr : &local;
    if (ep->valid == 0) {
        double M = *a[4];
        double m = *a[5];
        double posang = *a[6] * SCISQL_RAD_PER_DEG;
        if (SCISQL_ISSPECIAL(posang) || isnan(M) || isnan(m)) {
            *is_null = 1;
            return 0;
        }
        /* 0 <= m <= M <= 10 deg */
        if (m < 0.0 || m > M || M > 10.0 * SCISQL_ARCSEC_PER_DEG) {
            *is_null = 1;
            return 0;
        }
        if (sky_sc_init(&cen, *a[2], *a[3]) != 0) {
            *is_null = 1;
            return 0;
        }
        ep->sinLon = sin(cen.lon * SCISQL_RAD_PER_DEG);
        ep->cosLon = cos(cen.lon * SCISQL_RAD_PER_DEG);
        ep->sinLat = sin(cen.lat * SCISQL_RAD_PER_DEG);
        ep->cosLat = cos(cen.lat * SCISQL_RAD_PER_DEG);
        ep->sinPosAng = sin(posang);
        ep->cosPosAng = cos(posang);
        m = m * SCISQL_RAD_PER_DEG / SCISQL_ARCSEC_PER_DEG;
        M = M * SCISQL_RAD_PER_DEG / SCISQL_ARCSEC_PER_DEG;
        ep->invMinor2 = 1.0 / (m * m);
        ep->invMajor2 = 1.0 / (M * M);
        ep->valid = 1;
    }
    sky_sctov3(&v, &p);
#if SKYSHARD_ELLIPSE_HEMISPHERE_GUARD
    /* DEVIATION: the orthogonal projection maps a point and its mirror image
       through the tangent plane to the same (x, y), so scisql also reports
       points within ~10 deg of the ANTIPODE of the centre as inside.  An
       ellipse with semi-major axis <= 10 deg cannot contain any point more
       than 90 deg from its centre, so rejecting the far hemisphere only
       removes those false positives. */
    if (ep->cosLat * (ep->cosLon * v.x + ep->sinLon * v.y) + ep->sinLat * v.z < 0.0) {
        return 0;
    }
#endif
    /* coordinates of the point in the (north, east) basis at the centre */
    xne = ep->cosLat * v.z - ep->sinLat * (ep->sinLon * v.y + ep->cosLon * v.x);
    yne = ep->cosLon * v.y - ep->sinLon * v.x;
    /* rotate by the negated position angle: x along the major axis */
    x = ep->sinPosAng * yne + ep->cosPosAng * xne;
    y = ep->cosPosAng * yne - ep->sinPosAng * xne;
    return x * x * ep->invMajor2 + y * y * ep->invMinor2 <= 1.0;
}

SKY_API void scisql_s2PtInEllipse_deinit(UDF_INIT *initid) {
    free(initid->ptr);
    initid->ptr = NULL;
}

/* ---- scisql_s2PtInCPoly ------------------------------------------------- */

/* scisql_s2PtInCPoly(lon, lat, v1Lon, v1Lat, v2Lon, v2Lat, v3Lon, v3Lat, ...)
   with 3 to 20 vertices, or scisql_s2PtInCPoly(lon, lat, polyBinary) with a
   byte string made by scisql_s2CPolyToBin() -> 1/0.
   - any NULL argument -> 0
   - NaN/Inf coordinates or latitudes outside [-90, 90] -> NULL
   - a byte string of the wrong length -> NULL
   - vertices in clockwise or counter-clockwise order; assumed (not checked)
     to form a convex, hemispherical polygon; boundary points are inside.
   A constant position and/or constant polygon is converted once. */
typedef struct {
    int valid;
    int const_pos;
    int const_poly;
    sky_v3 pos;
    sky_cpoly poly;
} sky_ptpoly_state;

SKY_API my_bool scisql_s2PtInCPoly_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    unsigned int i;
    my_bool const_item = 1, const_pos = 1, const_poly = 1;
    if (args->arg_count != 3) {
        if (args->arg_count < 8 || args->arg_count > 2 + 2 * SCISQL_MAX_VERTS ||
            (args->arg_count & 1) != 0) {
            snprintf(message, MYSQL_ERRMSG_SIZE,
                     "scisql_s2PtInCPoly() expects between 4 and %d spherical coordinate "
                     "pairs (a point and 3 to %d polygon vertices)",
                     SCISQL_MAX_VERTS + 1, SCISQL_MAX_VERTS);
            return 1;
        }
    } else if (args->arg_type[2] != STRING_RESULT) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "scisql_s2PtInCPoly() expects a spherical coordinate pair and a polygon "
                 "byte-string");
        return 1;
    }
    for (i = 0; i < 2; ++i) {
        args->arg_type[i] = REAL_RESULT;
        if (args->args[i] == NULL) {
            const_item = 0;
            const_pos = 0;
        }
    }
    for (i = 2; i < args->arg_count; ++i) {
        if (args->arg_count != 3) {
            args->arg_type[i] = REAL_RESULT;
        }
        if (args->args[i] == NULL) {
            const_item = 0;
            const_poly = 0;
        }
    }
    initid->maybe_null = 1;
    initid->const_item = const_item;
    initid->decimals = 0;
    initid->ptr = NULL;
    if (const_pos || const_poly) {
        sky_ptpoly_state *state = (sky_ptpoly_state *)malloc(sizeof(sky_ptpoly_state));
        if (state != NULL) {
            state->valid = 0;
            state->const_pos = const_pos;
            state->const_poly = const_poly;
            initid->ptr = (char *)state;
        }
    }
    return 0;
}

SKY_API long long scisql_s2PtInCPoly(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                                     char *error SKY_UNUSED) {
    sky_ptpoly_state local;
    sky_ptpoly_state *state;
    unsigned int i;
    size_t n;
    sky_sc pt;
    sky_v3 verts[SCISQL_MAX_VERTS];

    local.valid = 0;
    local.const_pos = 0;
    local.const_poly = 0;
    state = (initid->ptr == NULL) ? &local : (sky_ptpoly_state *)initid->ptr;

    if (state->valid == 0 || state->const_pos == 0) {
        double **a = (double **)args->args;
        if (a[0] == NULL || a[1] == NULL) {
            return 0;
        }
        if (sky_sc_init(&pt, *a[0], *a[1]) != 0) {
            *is_null = 1;
            return 0;
        }
        sky_sctov3(&state->pos, &pt);
    }
    if (state->valid == 0 || state->const_poly == 0) {
        for (i = 2; i < args->arg_count; ++i) {
            if (args->args[i] == NULL) {
                return 0;
            }
        }
        if (args->arg_count == 3) {
            if (sky_cpoly_frombin(&state->poly, (const unsigned char *)args->args[2],
                                  (size_t)args->lengths[2]) != 0) {
                *is_null = 1;
                return 0;
            }
        } else {
            double **a = (double **)args->args;
            for (i = 2, n = 0; i < args->arg_count; i += 2, ++n) {
                if (sky_sc_init(&pt, *a[i], *a[i + 1]) != 0) {
                    *is_null = 1;
                    return 0;
                }
                sky_sctov3(&verts[n], &pt);
            }
            if (sky_cpoly_init(&state->poly, verts, n) != 0) {
                *is_null = 1;
                return 0;
            }
        }
    }
    state->valid = 1;
    return sky_cpoly_contains(&state->poly, &state->pos);
}

SKY_API void scisql_s2PtInCPoly_deinit(UDF_INIT *initid) {
    free(initid->ptr);
    initid->ptr = NULL;
}

/* ---- scisql_s2CPolyToBin ------------------------------------------------ */

/* scisql_s2CPolyToBin(v1Lon, v1Lat, v2Lon, v2Lat, v3Lon, v3Lat, ...) with 3
   to 20 vertices -> BINARY string of 24 * (N + 1) bytes for
   scisql_s2PtInCPoly(lon, lat, poly).  NULL if any argument is NULL, NaN/Inf,
   or a latitude is outside [-90, 90]. */
SKY_API my_bool scisql_s2CPolyToBin_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    unsigned int i;
    my_bool const_item = 1;
    if (args->arg_count < 6 || args->arg_count > 2 * SCISQL_MAX_VERTS ||
        (args->arg_count & 1) != 0) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "scisql_s2CPolyToBin() expects between 3 and %d spherical coordinate pairs",
                 SCISQL_MAX_VERTS);
        return 1;
    }
    for (i = 0; i < args->arg_count; ++i) {
        args->arg_type[i] = REAL_RESULT;
        if (args->args[i] == NULL) {
            const_item = 0;
        }
    }
    /* DEVIATION: scisql writes into the server's 255-byte result buffer and
       therefore returns NULL for polygons with 10 or more vertices; we use a
       buffer of our own that fits 20 vertices. */
    initid->ptr = (char *)malloc(SKY_CPOLY_BIN_MAX);
    if (initid->ptr == NULL) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "scisql_s2CPolyToBin(): out of memory");
        return 1;
    }
    initid->maybe_null = 1;
    initid->max_length = SKY_CPOLY_BIN_MAX;
    initid->const_item = const_item;
    return 0;
}

SKY_API char *scisql_s2CPolyToBin(UDF_INIT *initid, UDF_ARGS *args, char *result,
                                  unsigned long *length, char *is_null,
                                  char *error SKY_UNUSED) {
    sky_cpoly poly;
    sky_sc pt;
    sky_v3 verts[SCISQL_MAX_VERTS];
    unsigned int i;
    size_t n;
    double **a = (double **)args->args;

    for (i = 0; i < args->arg_count; ++i) {
        if (a[i] == NULL) {
            *is_null = 1;
            return result;
        }
    }
    for (i = 0, n = 0; i < args->arg_count; i += 2, ++n) {
        if (sky_sc_init(&pt, *a[i], *a[i + 1]) != 0) {
            *is_null = 1;
            return result;
        }
        sky_sctov3(&verts[n], &pt);
    }
    if (sky_cpoly_init(&poly, verts, n) != 0) {
        *is_null = 1;
        return result;
    }
    *length = (unsigned long)sky_cpoly_tobin((unsigned char *)initid->ptr, SKY_CPOLY_BIN_MAX,
                                             &poly);
    if (*length == 0) {
        *is_null = 1;
        return result;
    }
    return initid->ptr;
}

SKY_API void scisql_s2CPolyToBin_deinit(UDF_INIT *initid) {
    free(initid->ptr);
    initid->ptr = NULL;
}

/* ---- Photometry (after scisql src/photometry.h, 2022 UDFs) -------------- */

/* Returns 1 (and sets *is_null) when the value is NULL or NaN/Inf. */
static int sky_null_or_special(char *arg, char *is_null) {
    if (arg == NULL || SCISQL_ISSPECIAL(*(double *)arg)) {
        *is_null = 1;
        return 1;
    }
    return 0;
}

/* Returns value, or NULL (via *is_null) when it is NaN/Inf. */
static double sky_finite_or_null(double value, char *is_null) {
    if (SCISQL_ISSPECIAL(value)) {
        *is_null = 1;
        return 0.0;
    }
    return value;
}

/* flux [erg/cm^2/s/Hz] -> AB magnitude: -2.5 log10(flux) - 48.6.
   NULL for NULL, NaN/Inf or flux <= 0. */
SKY_API my_bool scisql_fluxToAbMag_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    return sky_init_reals(initid, args, message, 1, "scisql_fluxToAbMag");
}

SKY_API double scisql_fluxToAbMag(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args, char *is_null,
                                  char *error SKY_UNUSED) {
    double flux;
    if (sky_null_or_special(args->args[0], is_null)) {
        return 0.0;
    }
    flux = *(double *)args->args[0];
    if (flux <= 0.0) {
        *is_null = 1;
        return 0.0;
    }
    return sky_finite_or_null(-2.5 * log10(flux) - SCISQL_AB_ZP_CGS, is_null);
}

/* (flux, fluxSigma) [erg/cm^2/s/Hz] -> AB magnitude error:
   2.5/ln(10) * fluxSigma / flux.
   NULL for NULL, NaN/Inf, flux <= 0 or fluxSigma < 0. */
SKY_API my_bool scisql_fluxToAbMagSigma_init(UDF_INIT *initid, UDF_ARGS *args,
                                             char *message) {
    return sky_init_reals(initid, args, message, 2, "scisql_fluxToAbMagSigma");
}

SKY_API double scisql_fluxToAbMagSigma(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args,
                                       char *is_null, char *error SKY_UNUSED) {
    double flux, sigma;
    if (sky_null_or_special(args->args[0], is_null) ||
        sky_null_or_special(args->args[1], is_null)) {
        return 0.0;
    }
    flux = *(double *)args->args[0];
    sigma = *(double *)args->args[1];
    if (flux <= 0.0 || sigma < 0.0) {
        *is_null = 1;
        return 0.0;
    }
    return sky_finite_or_null(SCISQL_5_OVER_2LOG10 * sigma / flux, is_null);
}

/* AB magnitude -> flux [erg/cm^2/s/Hz]: 10^(-0.4 (mag + 48.6)).
   NULL for NULL, NaN/Inf or an overflowing result. */
SKY_API my_bool scisql_abMagToFlux_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    return sky_init_reals(initid, args, message, 1, "scisql_abMagToFlux");
}

SKY_API double scisql_abMagToFlux(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args, char *is_null,
                                  char *error SKY_UNUSED) {
    if (sky_null_or_special(args->args[0], is_null)) {
        return 0.0;
    }
    return sky_finite_or_null(pow(10.0, -0.4 * (*(double *)args->args[0] + SCISQL_AB_ZP_CGS)),
                              is_null);
}

/* (mag, magSigma) -> flux error [erg/cm^2/s/Hz]:
   magSigma * flux(mag) * ln(10)/2.5.
   NULL for NULL, NaN/Inf, magSigma < 0 or an overflowing result. */
SKY_API my_bool scisql_abMagToFluxSigma_init(UDF_INIT *initid, UDF_ARGS *args,
                                             char *message) {
    return sky_init_reals(initid, args, message, 2, "scisql_abMagToFluxSigma");
}

SKY_API double scisql_abMagToFluxSigma(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args,
                                       char *is_null, char *error SKY_UNUSED) {
    double mag, sigma;
    if (sky_null_or_special(args->args[0], is_null) ||
        sky_null_or_special(args->args[1], is_null)) {
        return 0.0;
    }
    mag = *(double *)args->args[0];
    sigma = *(double *)args->args[1];
    if (sigma < 0.0) {
        *is_null = 1;
        return 0.0;
    }
    return sky_finite_or_null(
        sigma * pow(10.0, -0.4 * (mag + SCISQL_AB_ZP_CGS)) * SCISQL_2LOG10_OVER_5, is_null);
}

/* flux [nJy] -> AB magnitude: -2.5 log10(flux) + 31.4.
   NULL for NULL, NaN/Inf or flux <= 0. */
SKY_API my_bool scisql_nanojanskyToAbMag_init(UDF_INIT *initid, UDF_ARGS *args,
                                              char *message) {
    return sky_init_reals(initid, args, message, 1, "scisql_nanojanskyToAbMag");
}

SKY_API double scisql_nanojanskyToAbMag(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args,
                                        char *is_null, char *error SKY_UNUSED) {
    double flux;
    if (sky_null_or_special(args->args[0], is_null)) {
        return 0.0;
    }
    flux = *(double *)args->args[0];
    if (flux <= 0.0) {
        *is_null = 1;
        return 0.0;
    }
    return sky_finite_or_null(-2.5 * log10(flux) + SCISQL_AB_ZP_NJY, is_null);
}

/* (flux, fluxSigma) [nJy] -> AB magnitude error: 2.5/ln(10) * sigma / flux.
   NULL for NULL, NaN/Inf, flux <= 0 or fluxSigma < 0. */
SKY_API my_bool scisql_nanojanskyToAbMagSigma_init(UDF_INIT *initid, UDF_ARGS *args,
                                                   char *message) {
    return sky_init_reals(initid, args, message, 2, "scisql_nanojanskyToAbMagSigma");
}

SKY_API double scisql_nanojanskyToAbMagSigma(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args,
                                             char *is_null, char *error SKY_UNUSED) {
    return scisql_fluxToAbMagSigma(initid, args, is_null, error);
}

/* AB magnitude -> flux [nJy]: 10^(-0.4 (mag - 31.4)).
   NULL for NULL, NaN/Inf or an overflowing result. */
SKY_API my_bool scisql_abMagToNanojansky_init(UDF_INIT *initid, UDF_ARGS *args,
                                              char *message) {
    return sky_init_reals(initid, args, message, 1, "scisql_abMagToNanojansky");
}

SKY_API double scisql_abMagToNanojansky(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args,
                                        char *is_null, char *error SKY_UNUSED) {
    if (sky_null_or_special(args->args[0], is_null)) {
        return 0.0;
    }
    return sky_finite_or_null(pow(10.0, -0.4 * (*(double *)args->args[0] - SCISQL_AB_ZP_NJY)),
                              is_null);
}

/* (mag, magSigma) -> flux error [nJy]: magSigma * flux(mag) * ln(10)/2.5.
   NULL for NULL, NaN/Inf, magSigma < 0 or an overflowing result. */
SKY_API my_bool scisql_abMagToNanojanskySigma_init(UDF_INIT *initid, UDF_ARGS *args,
                                                   char *message) {
    return sky_init_reals(initid, args, message, 2, "scisql_abMagToNanojanskySigma");
}

SKY_API double scisql_abMagToNanojanskySigma(UDF_INIT *initid SKY_UNUSED, UDF_ARGS *args,
                                             char *is_null, char *error SKY_UNUSED) {
    double mag, sigma;
    if (sky_null_or_special(args->args[0], is_null) ||
        sky_null_or_special(args->args[1], is_null)) {
        return 0.0;
    }
    mag = *(double *)args->args[0];
    sigma = *(double *)args->args[1];
    if (sigma < 0.0) {
        *is_null = 1;
        return 0.0;
    }
    return sky_finite_or_null(
        sigma * pow(10.0, -0.4 * (mag - SCISQL_AB_ZP_NJY)) * SCISQL_2LOG10_OVER_5, is_null);
}
