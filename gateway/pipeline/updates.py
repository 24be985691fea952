"""Give each row of an UPDATE a value of its own, in one statement."""

from __future__ import annotations

from collections.abc import Mapping
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
