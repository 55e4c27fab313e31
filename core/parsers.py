"""The API's request body parsers (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``): DRF's JSON,
form and multipart parsers, and two refusals every endpoint needs, as a 400 in the one error
shape rather than a 500 from deep inside a view:

- JSON nested deeper than ``MAX_DEPTH``: DRF's ``json.load`` lets ``RecursionError`` through
  (100,000 nested arrays are a 200 KB body), and no request of this API nests beyond a few
  levels;
- a NUL character in a text value: PostgreSQL text can neither store nor look one up
  (``DataError``), and relation fields such as a provider named by its USCC query with the
  value as sent, where DRF's ``CharField`` would have refused it.

``POST /api/v1/usage/`` reads its JSON and CSV bodies itself (``coupons.usage_api``); a
multipart upload there comes through ``MultiPartParser`` below.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from core.errors import Problem, ValidationFailed

MAX_DEPTH = 32


def check_values(data) -> None:
    """Refuse ``data`` (parsed JSON, or a form's ``QueryDict``) nested too deep or holding a
    NUL in a text value; the problem names where (``records[0].enterprise_uscc``)."""
    if hasattr(data, "lists"):  # a QueryDict: a list of values per name
        data = {name: values[0] if len(values) == 1 else values for name, values in data.lists()}
    stack = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ValidationFailed(
                    "A text value in the body holds a NUL character, which nothing can store.",
                    details=[Problem("holds a NUL character (\\u0000)", column=path or None)],
                )
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
            else:
                items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
            stack.extend((item, where, depth + 1) for where, item in items)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels") from None
        check_values(data)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        check_values(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    """Text fields are checked; uploaded files are the view's to read (a NUL there is for the
    CSV decoder to refuse)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data_and_files = super().parse(stream, media_type, parser_context)
        check_values(data_and_files.data)
        return data_and_files
