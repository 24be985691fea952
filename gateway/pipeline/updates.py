"""Statements the ORM builds slowly, written once for the hot paths.

Only the models' own quoted table and column names are interpolated;
every value is a query parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from django.db import connection
from django.db.models import Field, Model
from django.db.models.expressions import RawSQL


def value_per_row(
    model: type[Model], field_name: str, values: Mapping[Any, Any]
) -> RawSQL:
    """Return an expression worth `values[pk]` in the row of each pk.

    A plain CASE on the primary key. Django's Case(When(pk=...)) resolves
    a lookup for each row, which costs more than the update itself when
    the rows are many. The values go as parameters, prepared as the field
    would prepare them.
    """
    pk, field = model._meta.pk, model._meta.get_field(field_name)
    if pk is None or not isinstance(field, Field):
        raise TypeError(f"{model.__name__}.{field_name} is not a column")
    params: list[Any] = []
    for key, value in values.items():
        params.append(pk.get_db_prep_value(key, connection))
        params.append(field.get_db_prep_value(value, connection))
    column = connection.ops.quote_name(pk.column)
    cases = " ".join(["WHEN %s THEN %s"] * len(values))
    sql = f"CASE {column} {cases} END"
    return RawSQL(sql, params, output_field=field)  # noqa: S611 - parameters


def insert_fields(model: type[Model], *, with_pk: bool) -> list[Any]:
    """The columns a plain INSERT of `model` writes."""
    return [
        field
        for field in model._meta.local_concrete_fields
        if with_pk or field is not model._meta.pk
    ]


@lru_cache(maxsize=256)
def insert_sql(model: type[Model], rows: int, *, with_pk: bool) -> str:
    """`INSERT INTO table (columns) VALUES (...), ...` for that many rows."""
    quote = connection.ops.quote_name
    fields = insert_fields(model, with_pk=with_pk)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return (
        f"INSERT INTO {quote(model._meta.db_table)}"  # noqa: S608
        f" ({', '.join(quote(field.column) for field in fields)})"
        f" VALUES {', '.join([row] * rows)}"
    )


def insert_params(objects: Sequence[Model], *, with_pk: bool) -> list[Any]:
    """The values of `insert_sql` for these objects, as a save prepares them."""
    if not objects:
        return []
    fields = insert_fields(type(objects[0]), with_pk=with_pk)
    return [
        field.get_db_prep_save(field.pre_save(instance, True), connection)
        for instance in objects
        for field in fields
    ]


def mark_saved(objects: Sequence[Model]) -> None:
    """Tell the ORM these objects are now rows of the database."""
    for instance in objects:
        instance._state.adding = False
        instance._state.db = connection.alias
