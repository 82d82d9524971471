"""HTTP header names OCPI uses (lower case, as ASGI delivers them)."""

AUTHORIZATION = "authorization"
REQUEST_ID = "x-request-id"
CORRELATION_ID = "x-correlation-id"
TOTAL_COUNT = "x-total-count"
LIMIT = "x-limit"
LINK = "link"
LOCATION = "location"

TO_COUNTRY_CODE = "ocpi-to-country-code"
TO_PARTY_ID = "ocpi-to-party-id"
FROM_COUNTRY_CODE = "ocpi-from-country-code"
FROM_PARTY_ID = "ocpi-from-party-id"

ROUTING = (TO_COUNTRY_CODE, TO_PARTY_ID, FROM_COUNTRY_CODE, FROM_PARTY_ID)
