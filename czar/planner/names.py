"""Result column names as MySQL reports them.

MySQL names an unaliased select item by its text as the user typed it
(``count(*)`` stays lower case), a plain column by the column name, and an
aliased item by its alias.  sqlglot does not keep the original text, so this
rule recovers it from the token positions of the select list.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.tokens import Token, TokenType

_OPEN = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSE = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}


def select_item_texts(sql: str) -> list[str]:
    """The original text of each top-level select item of the first SELECT."""
    tokens: list[Token] = MySQL().tokenize(sql)
    depth = 0
    start_index = None
    items: list[tuple[int, int]] = []
    current_start = None
    for index, token in enumerate(tokens):
        if start_index is None:
            if token.token_type == TokenType.SELECT and depth == 0:
                start_index = index
            elif token.token_type in _OPEN:
                depth += 1
            elif token.token_type in _CLOSE:
                depth -= 1
            continue
        if token.token_type in _OPEN:
            depth += 1
        elif token.token_type in _CLOSE:
            depth -= 1
        if depth == 0 and token.token_type in (TokenType.FROM, TokenType.SEMICOLON):
            break
        if depth < 0:
            break
        if depth == 0 and token.token_type in (TokenType.DISTINCT, TokenType.ALL) and current_start is None and not items:
            continue
        if depth == 0 and token.token_type == TokenType.COMMA:
            if current_start is not None:
                items.append((current_start, tokens[index - 1].end))
            current_start = None
            continue
        if current_start is None:
            current_start = token.start
        last_end = token.end
    if current_start is not None:
        items.append((current_start, last_end))
    return [sql[start : end + 1] for start, end in items]


def item_name(item: exp.Expression, text: str | None) -> str:
    """The column name MySQL reports for select item ``item`` typed as ``text``."""
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column) and not isinstance(item.this, exp.Star):
        return item.name
    if text is not None:
        return text.strip()
    return item.sql(dialect="mysql")
