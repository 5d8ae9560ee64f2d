"""The category's questions at intake: one rule for the native API and Open311 (issue #11, "Sources").

A category (a service of the catalogue) may ask questions, Open311's attributes with datatypes
(:meth:`services.tickets.catalogue.Service.check_attributes` checks an answer). Both intake paths ask
:func:`answers` for the clean values, kept on the ticket as ``attributes`` (Open311's name), shown in
every view of it, and cleared with its description when the reporter is erased or retention comes.
Patrol findings do not come through here: their schema (kernel/contracts.py) carries no answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel.errors import ValidationFailed
from services.tickets.catalogue import Service

OPEN311_FIELD = "attribute[{code}]"  # GeoReport v2 names an answer attribute[code] in its form
NATIVE_FIELD = "attributes.{code}"  # the JSON body's path to it


def answers(service: Service, given: Mapping[str, Any] | None, field: str = NATIVE_FIELD) -> dict[str, Any]:
    """The clean answers to ``service``'s questions, or 422 listing every bad or missing one.

    ``field`` names an answer in the errors, as the caller's request spells it. ``given`` None is a
    native body without ``attributes``: it answers nothing, so it is held to the same rule as ``{}``.
    The questions are asked and validated at intake (issue #11), so a required answer (a roof leak's
    floor) is required from every path -- resident, staff's phone-in or walk-in, Open311 -- or the office
    has to call back for it before anyone can be sent. A category without required questions still
    takes a body without ``attributes``.

    >>> from services.tickets.catalogue import Catalogue
    >>> leak = Catalogue.load().get("roof_leak")
    >>> answers(leak, {"floor": "6", "still_leaking": "yes"})
    {'floor': 6, 'still_leaking': 'yes'}
    >>> try:
    ...     answers(leak, {"floor": "six", "colour": "red"})  # still_leaking is required, too
    ... except ValidationFailed as error:
    ...     sorted(error.details)
    ['attributes.colour', 'attributes.floor', 'attributes.still_leaking']
    >>> try:
    ...     answers(leak, None)  # a body without attributes: the required questions are still asked
    ... except ValidationFailed as error:
    ...     error.details
    {'attributes.floor': ['required'], 'attributes.still_leaking': ['required']}
    >>> answers(Catalogue.load().get("sanitation"), None)  # no questions: nothing to answer
    {}
    """
    values, errors = service.check_attributes(given or {})
    if errors:
        # check_attributes names each problem attribute[code]; the request's own spelling is ``field``
        named = {field.format(code=key[len("attribute["):-1]): problems for key, problems in errors.items()}
        raise ValidationFailed("the attributes do not match the service definition", named)
    return values
