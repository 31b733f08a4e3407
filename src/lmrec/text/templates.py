"""Item text templates: one text per item, built from the fields each data set has.

A template is a format string over item fields: `{title}`, `{categories}` (", "-joined),
`{category_path}` (" > "-joined), `{brand}` and any other text field or attribute by name
(ml-latest-small's `{tags}`, amazon-scientific's `{full_text}`, ...). Sentences of a template
whose fields are all empty are left out, so a movie without tags gets no "Tags: ." clause.

Example:
    >>> from lmrec.data.dataset import ItemTable
    >>> table = ItemTable(title=["Toy Story (1995)"], categories=[["Animation", "Comedy"]])
    >>> render(TEMPLATES["ml-100k"], table, 0)
    'Toy Story (1995). Genres: Animation, Comedy.'
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from lmrec.data.dataset import Dataset, ItemTable

#: template per data set name; data sets not listed use `generic_text`
TEMPLATES: dict[str, str] = {
    "ml-100k": "{title}. Genres: {categories}.",
    "ml-latest-small": "{title}. Genres: {categories}. Tags: {tags}.",
    "ml-1m": "{title}. Genres: {categories}.",
    # full_text already is "title. category path. brand." (description and brand come from it)
    "amazon-scientific": "{full_text}",
    "generic": "{title}. {categories}. Brand: {brand}. {description}",
}

_SENTENCE = re.compile(r"(?<=\.)\s+")
_DOUBLE_DOT = re.compile(r"(?<!\.)\.\.(?!\.)")


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def field_value(table: ItemTable, i: int, name: str) -> str:
    """Item i's value of one template field as text ("" when missing)."""
    if name == "title":
        value: Any = table.title[i]
    elif name == "categories":
        value = ", ".join(c for c in table.categories[i] if c)
    elif name == "category_path":
        value = " > ".join(c for c in table.categories[i] if c)
    elif name in table.text:
        value = table.text[name][i]
    elif name in table.attributes:
        value = table.attributes[name][i]
    elif name in ("brand", "description", "tags", "full_text"):
        value = ""  # common optional fields: absent in this data set
    else:
        known = ["title", "categories", "category_path", *table.text, *table.attributes]
        raise KeyError(f"template field {name!r} is not an item field; known: {', '.join(known)}")
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value if v)
    return str(value).strip()


def render(template: str, table: ItemTable, i: int) -> str:
    """Item i's text from `template`, dropping sentences whose fields are all empty."""
    out = []
    for part in _SENTENCE.split(template.strip()):
        names = _fields(part)
        values = {n: field_value(table, i, n) for n in names}
        if names and not any(values.values()):
            continue
        out.append(part.format_map(values))
    return _DOUBLE_DOT.sub(".", " ".join(out)).strip()


def generic_text(table: ItemTable, i: int) -> str:
    """Title, categories, brand, then every text field: for data sets without a template."""
    text = table.item_text(i)
    brand = field_value(table, i, "brand") if "brand" in table.attributes else ""
    return f"{text}. Brand: {brand}" if brand and brand not in text else text


def _template_of(dataset: Dataset, template: str | None) -> str | None:
    """The format string to use: `template` (a TEMPLATES key or a format string), else the
    data set's own (`Dataset.template`, then `TEMPLATES[dataset.name]`); None: generic_text."""
    if template is None:
        template = dataset.template
    tpl = TEMPLATES.get(template, template) if template is not None else TEMPLATES.get(dataset.name)
    if tpl is not None and "{" not in tpl:
        raise ValueError(f"unknown template {template!r}: give a key of TEMPLATES "
                         f"({', '.join(TEMPLATES)}) or a format string with {{title}}-style fields")
    return tpl


def item_texts(dataset: Dataset, template: str | None = None, items: Sequence[int] | None = None) -> list[str]:
    """One text per item (in item index order, or for the indices `items`) for embedding.

    `template` is a key of `TEMPLATES` or a format string; None picks the data set's own
    template (`Dataset.template`, else `TEMPLATES[dataset.name]`), else `generic_text`.
    """
    table = dataset.item_table
    if table is None:
        raise ValueError(f"{dataset.name}: the data set has no item table, so no item texts")
    tpl = _template_of(dataset, template)
    which = range(len(table)) if items is None else [int(i) for i in items]
    if tpl is None:
        return [generic_text(table, i) for i in which]
    _check_fields(tpl, table)
    return [render(tpl, table, i) for i in which]


def _check_fields(template: str, table: ItemTable) -> None:
    """Fail once, up front, on a field the table cannot provide."""
    if len(table):
        for name in _fields(template):
            field_value(table, 0, name)
