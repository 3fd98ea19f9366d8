"""What every paginated screen shares: its answer to bad input, and the links between its
pages (as `templates/agents/includes/pager.html` shows them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Page


def form_problems(form: forms.BaseForm) -> list[str]:
    """A bound, invalid form's errors as lines: "field: message" (or the message alone for
    an error of the whole form)."""
    return [
        f"{name}: {error}" if name != NON_FIELD_ERRORS else str(error)
        for name, errors in form.errors.items()
        for error in errors
    ]


@dataclass(kw_only=True)
class Answer:
    """A screen's HTTP status, and the problems with its query string when it is not 200."""

    status_code: int = 200
    problem: list[str] = field(default_factory=list)

    def refuse(self, status_code: int, *problems: str) -> None:
        self.status_code = status_code
        self.problem = list(problems)

    def refuse_form(self, form: forms.BaseForm) -> None:
        """Answer 400 with the problems of the query string's form."""
        self.refuse(400, *form_problems(form))


@dataclass(kw_only=True)
class SeekAnswer(Answer):
    """The answer of a screen paged by keyset (`keyset.seek`): links to its first, previous
    and next pages, shown by `pager`. A screen names its pages in the class variables and
    says where a page stands in `position`."""

    PAGER_LABEL: ClassVar[str] = "Pages"
    PREV_TEXT: ClassVar[str] = "Previous"
    NEXT_TEXT: ClassVar[str] = "Next"
    PAGER_ALWAYS: ClassVar[bool] = True  # show the position even when there is one page

    first_url: str = ""
    prev_url: str = ""
    next_url: str = ""

    @property
    def position(self) -> str:
        raise NotImplementedError

    @property
    def pager(self) -> Pager:
        return Pager(
            label=self.PAGER_LABEL,
            position=self.position,
            first_url=self.first_url if self.prev_url else "",
            prev_url=self.prev_url,
            next_url=self.next_url,
            prev_text=self.PREV_TEXT,
            next_text=self.NEXT_TEXT,
            shown=self.PAGER_ALWAYS or bool(self.prev_url or self.next_url),
        )


@dataclass(frozen=True)
class Pager:
    label: str  # what the pages are of, for screen readers: "Pages of keys"
    position: str  # "page 2 of 5", "50 shown of 1,200"
    first_url: str = ""
    prev_url: str = ""
    next_url: str = ""
    last_url: str = ""
    prev_text: str = "Previous"
    next_text: str = "Next"
    shown: bool = True

    @classmethod
    def of_page(
        cls,
        page: Page,
        *,
        label: str,
        param: str = "page",
        anchor: str = "",
        first_and_last: bool = False,
        always: bool = False,
    ) -> Pager:
        """Links `?<param>=<n><anchor>` to the pages around a numbered `page`."""

        def url(number: int) -> str:
            return f"?{param}={number}{anchor}"

        last = page.paginator.num_pages
        return cls(
            label=label,
            position=f"page {page.number} of {last}",
            first_url=url(1) if first_and_last and page.has_previous() else "",
            prev_url=url(page.previous_page_number()) if page.has_previous() else "",
            next_url=url(page.next_page_number()) if page.has_next() else "",
            last_url=url(last) if first_and_last and page.has_next() else "",
            shown=always or page.has_other_pages(),
        )
