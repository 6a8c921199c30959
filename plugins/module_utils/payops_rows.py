# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What modules that return verdict rows (component, state, value, target, detail: the shape the
betaskill.payops.report role prints) share: numbers and text as an operator reads them."""

from __future__ import annotations


def number(value):
    """A threshold as an operator wrote it: 300, not 300.0; 0.5 stays 0.5."""
    return f"{value:g}" if float(value).is_integer() else str(value)


def truncate(text, length=200, end="..."):
    """Jinja's truncate: a little over the length is kept, else cut at a word and marked."""
    if len(text) <= length + 5:
        return text
    return text[: length - len(end)].rsplit(" ", 1)[0] + end
