"""A lead's phone number beyond parsing: its region and type in one pass, and its candidate
time zones, each worked out once per number (phonenumbers is most of a lead row's cost)."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType
from phonenumbers import timezone as number_timezone

__all__ = ["is_zone", "parse_number", "region_and_type", "zones_for"]

# visual separators in a written number; anything else (letters, extensions, a second
# '+', other scripts' digits) goes the library's whole way
_SEPARATORS = str.maketrans("", "", " -().")
_PREFIX_FOR_PARSING: dict[int, re.Pattern[str] | None] = {}


def parse_number(raw: str, region: str | None) -> phonenumbers.PhoneNumber:
    """`phonenumbers.parse(raw, region)`, quick for what lead files mostly hold: a number
    written internationally (`+1 202-555-0101`, `+91 98765 43210`). Such a number is its
    country code and national number as written, unless its national part starts with 0
    or with the country's national prefix (which the library may strip): those, and every
    other form, are parsed by the library. tests/test_leads.py holds the two to the same
    answers."""
    text = raw.translate(_SEPARATORS)
    digits = text[1:]
    if (text[:1] != "+" or not digits.isascii() or not digits.isdigit()
            or not 8 <= len(digits) <= 17 or digits[0] == "0"):
        return phonenumbers.parse(raw, region)
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return phonenumbers.parse(raw, region)
    national = digits[size:]
    if national[0] == "0" or _national_prefix_at_start(code, national):
        return phonenumbers.parse(raw, region)
    return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))


def _national_prefix_at_start(code: int, national: str) -> bool:
    if code not in _PREFIX_FOR_PARSING:
        region = phonenumbers.region_code_for_country_code(code)
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        pattern = metadata.national_prefix_for_parsing if metadata is not None else None
        _PREFIX_FOR_PARSING[code] = re.compile(pattern) if pattern else None
    prefix = _PREFIX_FOR_PARSING[code]
    return prefix is not None and prefix.match(national) is not None


def region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str, int]:
    """The region a number belongs to ("US", "IN"; "001" for a non-geographic code) and its
    type, UNKNOWN when it is not a valid number (as `is_valid_number` decides it).

    This is `phonenumbers.region_code_for_number` and `phonenumbers.number_type` in one
    pass: for a country code shared by several regions (+1, +7, +44...) the region is the
    first whose leading digits match or for which the number has a type, and that type is
    the answer; the two library calls would work it out twice (most of a NANPA number's
    cost). tests/test_leads.py holds it to the library's answers."""
    code = number.country_code
    if code is None:
        return "", PhoneNumberType.UNKNOWN
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions:
        return "", PhoneNumberType.UNKNOWN
    national = phonenumbers.national_significant_number(number)
    if len(regions) > 1:
        for region in regions:
            metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
            if metadata is None:
                continue
            if metadata.leading_digits is not None:
                if re.match(metadata.leading_digits, national):
                    break
            else:
                kind = _number_type(national, metadata)
                if kind != PhoneNumberType.UNKNOWN:
                    return region, kind
        else:
            return "", PhoneNumberType.UNKNOWN
    else:
        region = regions[0]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None:
        return "", PhoneNumberType.UNKNOWN
    return region, _number_type(national, metadata)


# A type's description in a region's metadata, ready to match: the lengths a number of that
# type may have (empty: any) and its pattern; None when no number is of that type.
_Desc = tuple[frozenset[int], re.Pattern[str]] | None
_SPECIAL_TYPES = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE), ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST), ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER), ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN), ("voicemail", PhoneNumberType.VOICEMAIL),
)
# per metadata (they live as long as the library): general, special types in the library's
# order, fixed line, mobile, whether fixed line and mobile share one pattern
_TypePlan = tuple[_Desc, tuple[tuple[_Desc, int], ...], _Desc, _Desc, bool]
_PLANS: dict[int, _TypePlan] = {}


def _desc(desc: object) -> _Desc:
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return None
    return frozenset(getattr(desc, "possible_length", ()) or ()), re.compile(pattern)


def _plan(metadata: PhoneMetadata) -> _TypePlan:
    specials = tuple((d, kind) for name, kind in _SPECIAL_TYPES
                     if (d := _desc(getattr(metadata, name))) is not None)
    plan = (_desc(metadata.general_desc), specials, _desc(metadata.fixed_line),
            _desc(metadata.mobile), bool(metadata.same_mobile_and_fixed_line_pattern))
    _PLANS[id(metadata)] = plan
    return plan


def _matches(desc: _Desc, national: str) -> bool:
    if desc is None:
        return False
    lengths, pattern = desc
    return (not lengths or len(national) in lengths) and pattern.fullmatch(national) is not None


def _number_type(national: str, metadata: PhoneMetadata) -> int:
    """The library's `_number_type_helper` with each pattern compiled once (it looks every
    one up again per number, most of the cost of a type check)."""
    general, specials, fixed, mobile, same = _PLANS.get(id(metadata)) or _plan(metadata)
    if not _matches(general, national):
        return PhoneNumberType.UNKNOWN
    for desc, kind in specials:
        if _matches(desc, national):
            return kind
    if _matches(fixed, national):
        if same or _matches(mobile, national):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same and _matches(mobile, national):
        return PhoneNumberType.MOBILE
    return PhoneNumberType.UNKNOWN


@lru_cache(maxsize=1024)
def is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


_COUNTRY_ZONES: dict[int, tuple[str, ...]] = {}


def zones_for(number: phonenumbers.PhoneNumber, number_type: int) -> tuple[str, ...]:
    """What `time_zones_for_number` gives for a valid number of this type, without asking
    for its type again (most of that function's cost): a geographical number's zones come
    from its prefix; any other number gets its country's, which depend on the country
    code alone and are kept per code."""
    code = number.country_code or 0
    geographical = phonenumbers.is_number_type_geographical(number_type, code)
    if not geographical and code in _COUNTRY_ZONES:
        return _COUNTRY_ZONES[code]
    found = (number_timezone.time_zones_for_geographical_number(number) if geographical
             else number_timezone.time_zones_for_number(number))
    zones = tuple(z for z in found if z != number_timezone.UNKNOWN_TIMEZONE)
    if not geographical:
        _COUNTRY_ZONES[code] = zones
    return zones
