"""Catalog ingest: partitioning and loading of input tables into chunks."""
