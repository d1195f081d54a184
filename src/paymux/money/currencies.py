"""ISO 4217 currencies, their minor units, and the charge limits paymux enforces.

``CURRENCIES`` holds every active currency and funds code of ISO 4217 "list one" (as
maintained by SIX Group, amendments up to and including 180) that has a minor unit. The
exponent (``Currency.exponent``) is the ISO 4217 minor unit, *not* CLDR's or a gateway's:

- ISO says ISK, JPY, KRW, VND, CLP, XOF, XAF, XPF, UGX, PYG, RWF, BIF, DJF, GNF, KMF, VUV and
  the UYI funds code have no minor unit (0); BHD, IQD, JOD, KWD, LYD, OMR and TND have 3;
  CLF and UYW have 4; every other code has 2.
- Gateways sometimes disagree (Stripe treats MGA as zero-decimal, wants ISK and HUF amounts
  with two decimals, and the last digit of three-decimal amounts to be 0). Converting to a
  gateway's convention is the gateway adapter's job, not this table's.

Left out on purpose: codes whose minor unit ISO gives as "N.A." (XAU, XAG, XPD, XPT, XBA,
XBB, XBC, XBD, XDR, XSU, XUA, XTS, XXX) and withdrawn codes that ISO moved to list three
(among recent ones: ANG, replaced by XCG, which took over its numeric code 532; CUC; ZWL,
replaced by ZWG; SLL, replaced by SLE; HRK; STD; MRO; VEF). BGN is kept: Bulgaria adopted the
euro on 2026-01-01 and ISO amendment 180 withdraws the lev, but gateways still publish limits
for it and old payments in BGN must stay readable.

Charge limits (``min_charge_amount``, ``max_charge_amount``) are in minor units. Minimums are
Stripe's published per-currency minimums (https://docs.stripe.com/currencies, "Minimum and
maximum charge amounts"); every other currency's minimum is one minor unit. The maximum is
Stripe's eight-digit limit, 99,999,999 minor units, for every currency.

Lookups are case-insensitive (``"usd"`` finds USD) but strict otherwise: no whitespace,
no non-ASCII look-alikes, no numeric codes. Anything else raises
:class:`~paymux.money.errors.UnknownCurrencyError`.

This module is pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from paymux.money.errors import UnknownCurrencyError

__all__ = [
    "CURRENCIES",
    "MAX_CHARGE_AMOUNT",
    "Currency",
    "get_currency",
    "max_charge_amount",
    "min_charge_amount",
]


@dataclass(frozen=True, slots=True)
class Currency:
    """One ISO 4217 currency.

    ``code`` is the upper-case alphabetic code, ``numeric`` the three-digit numeric code (as
    a string, leading zeros kept), ``exponent`` the number of minor-unit digits (USD 2: one
    dollar is 100 minor units; JPY 0; KWD 3) and ``name`` the ISO 4217 English name.
    """

    code: str
    numeric: str
    exponent: int
    name: str

    @property
    def minor_units_per_major(self) -> int:
        """How many minor units make one major unit: ``10 ** exponent``."""
        return int(10**self.exponent)


# code, numeric, exponent (ISO 4217 minor unit), ISO 4217 name
_TABLE: tuple[tuple[str, str, int, str], ...] = (
    ("AED", "784", 2, "UAE Dirham"),
    ("AFN", "971", 2, "Afghani"),
    ("ALL", "008", 2, "Lek"),
    ("AMD", "051", 2, "Armenian Dram"),
    ("AOA", "973", 2, "Kwanza"),
    ("ARS", "032", 2, "Argentine Peso"),
    ("AUD", "036", 2, "Australian Dollar"),
    ("AWG", "533", 2, "Aruban Florin"),
    ("AZN", "944", 2, "Azerbaijan Manat"),
    ("BAM", "977", 2, "Convertible Mark"),
    ("BBD", "052", 2, "Barbados Dollar"),
    ("BDT", "050", 2, "Taka"),
    ("BGN", "975", 2, "Bulgarian Lev"),
    ("BHD", "048", 3, "Bahraini Dinar"),
    ("BIF", "108", 0, "Burundi Franc"),
    ("BMD", "060", 2, "Bermudian Dollar"),
    ("BND", "096", 2, "Brunei Dollar"),
    ("BOB", "068", 2, "Boliviano"),
    ("BOV", "984", 2, "Mvdol"),
    ("BRL", "986", 2, "Brazilian Real"),
    ("BSD", "044", 2, "Bahamian Dollar"),
    ("BTN", "064", 2, "Ngultrum"),
    ("BWP", "072", 2, "Pula"),
    ("BYN", "933", 2, "Belarusian Ruble"),
    ("BZD", "084", 2, "Belize Dollar"),
    ("CAD", "124", 2, "Canadian Dollar"),
    ("CDF", "976", 2, "Congolese Franc"),
    ("CHE", "947", 2, "WIR Euro"),
    ("CHF", "756", 2, "Swiss Franc"),
    ("CHW", "948", 2, "WIR Franc"),
    ("CLF", "990", 4, "Unidad de Fomento"),
    ("CLP", "152", 0, "Chilean Peso"),
    ("CNY", "156", 2, "Yuan Renminbi"),
    ("COP", "170", 2, "Colombian Peso"),
    ("COU", "970", 2, "Unidad de Valor Real"),
    ("CRC", "188", 2, "Costa Rican Colon"),
    ("CUP", "192", 2, "Cuban Peso"),
    ("CVE", "132", 2, "Cabo Verde Escudo"),
    ("CZK", "203", 2, "Czech Koruna"),
    ("DJF", "262", 0, "Djibouti Franc"),
    ("DKK", "208", 2, "Danish Krone"),
    ("DOP", "214", 2, "Dominican Peso"),
    ("DZD", "012", 2, "Algerian Dinar"),
    ("EGP", "818", 2, "Egyptian Pound"),
    ("ERN", "232", 2, "Nakfa"),
    ("ETB", "230", 2, "Ethiopian Birr"),
    ("EUR", "978", 2, "Euro"),
    ("FJD", "242", 2, "Fiji Dollar"),
    ("FKP", "238", 2, "Falkland Islands Pound"),
    ("GBP", "826", 2, "Pound Sterling"),
    ("GEL", "981", 2, "Lari"),
    ("GHS", "936", 2, "Ghana Cedi"),
    ("GIP", "292", 2, "Gibraltar Pound"),
    ("GMD", "270", 2, "Dalasi"),
    ("GNF", "324", 0, "Guinean Franc"),
    ("GTQ", "320", 2, "Quetzal"),
    ("GYD", "328", 2, "Guyana Dollar"),
    ("HKD", "344", 2, "Hong Kong Dollar"),
    ("HNL", "340", 2, "Lempira"),
    ("HTG", "332", 2, "Gourde"),
    ("HUF", "348", 2, "Forint"),
    ("IDR", "360", 2, "Rupiah"),
    ("ILS", "376", 2, "New Israeli Sheqel"),
    ("INR", "356", 2, "Indian Rupee"),
    ("IQD", "368", 3, "Iraqi Dinar"),
    ("IRR", "364", 2, "Iranian Rial"),
    ("ISK", "352", 0, "Iceland Krona"),
    ("JMD", "388", 2, "Jamaican Dollar"),
    ("JOD", "400", 3, "Jordanian Dinar"),
    ("JPY", "392", 0, "Yen"),
    ("KES", "404", 2, "Kenyan Shilling"),
    ("KGS", "417", 2, "Som"),
    ("KHR", "116", 2, "Riel"),
    ("KMF", "174", 0, "Comorian Franc"),
    ("KPW", "408", 2, "North Korean Won"),
    ("KRW", "410", 0, "Won"),
    ("KWD", "414", 3, "Kuwaiti Dinar"),
    ("KYD", "136", 2, "Cayman Islands Dollar"),
    ("KZT", "398", 2, "Tenge"),
    ("LAK", "418", 2, "Lao Kip"),
    ("LBP", "422", 2, "Lebanese Pound"),
    ("LKR", "144", 2, "Sri Lanka Rupee"),
    ("LRD", "430", 2, "Liberian Dollar"),
    ("LSL", "426", 2, "Loti"),
    ("LYD", "434", 3, "Libyan Dinar"),
    ("MAD", "504", 2, "Moroccan Dirham"),
    ("MDL", "498", 2, "Moldovan Leu"),
    ("MGA", "969", 2, "Malagasy Ariary"),
    ("MKD", "807", 2, "Denar"),
    ("MMK", "104", 2, "Kyat"),
    ("MNT", "496", 2, "Tugrik"),
    ("MOP", "446", 2, "Pataca"),
    ("MRU", "929", 2, "Ouguiya"),
    ("MUR", "480", 2, "Mauritius Rupee"),
    ("MVR", "462", 2, "Rufiyaa"),
    ("MWK", "454", 2, "Malawi Kwacha"),
    ("MXN", "484", 2, "Mexican Peso"),
    ("MXV", "979", 2, "Mexican Unidad de Inversion (UDI)"),
    ("MYR", "458", 2, "Malaysian Ringgit"),
    ("MZN", "943", 2, "Mozambique Metical"),
    ("NAD", "516", 2, "Namibia Dollar"),
    ("NGN", "566", 2, "Naira"),
    ("NIO", "558", 2, "Cordoba Oro"),
    ("NOK", "578", 2, "Norwegian Krone"),
    ("NPR", "524", 2, "Nepalese Rupee"),
    ("NZD", "554", 2, "New Zealand Dollar"),
    ("OMR", "512", 3, "Rial Omani"),
    ("PAB", "590", 2, "Balboa"),
    ("PEN", "604", 2, "Sol"),
    ("PGK", "598", 2, "Kina"),
    ("PHP", "608", 2, "Philippine Peso"),
    ("PKR", "586", 2, "Pakistan Rupee"),
    ("PLN", "985", 2, "Zloty"),
    ("PYG", "600", 0, "Guarani"),
    ("QAR", "634", 2, "Qatari Rial"),
    ("RON", "946", 2, "Romanian Leu"),
    ("RSD", "941", 2, "Serbian Dinar"),
    ("RUB", "643", 2, "Russian Ruble"),
    ("RWF", "646", 0, "Rwanda Franc"),
    ("SAR", "682", 2, "Saudi Riyal"),
    ("SBD", "090", 2, "Solomon Islands Dollar"),
    ("SCR", "690", 2, "Seychelles Rupee"),
    ("SDG", "938", 2, "Sudanese Pound"),
    ("SEK", "752", 2, "Swedish Krona"),
    ("SGD", "702", 2, "Singapore Dollar"),
    ("SHP", "654", 2, "Saint Helena Pound"),
    ("SLE", "925", 2, "Leone"),
    ("SOS", "706", 2, "Somali Shilling"),
    ("SRD", "968", 2, "Surinam Dollar"),
    ("SSP", "728", 2, "South Sudanese Pound"),
    ("STN", "930", 2, "Dobra"),
    ("SVC", "222", 2, "El Salvador Colon"),
    ("SYP", "760", 2, "Syrian Pound"),
    ("SZL", "748", 2, "Lilangeni"),
    ("THB", "764", 2, "Baht"),
    ("TJS", "972", 2, "Somoni"),
    ("TMT", "934", 2, "Turkmenistan New Manat"),
    ("TND", "788", 3, "Tunisian Dinar"),
    ("TOP", "776", 2, "Pa'anga"),
    ("TRY", "949", 2, "Turkish Lira"),
    ("TTD", "780", 2, "Trinidad and Tobago Dollar"),
    ("TWD", "901", 2, "New Taiwan Dollar"),
    ("TZS", "834", 2, "Tanzanian Shilling"),
    ("UAH", "980", 2, "Hryvnia"),
    ("UGX", "800", 0, "Uganda Shilling"),
    ("USD", "840", 2, "US Dollar"),
    ("USN", "997", 2, "US Dollar (Next day)"),
    ("UYI", "940", 0, "Uruguay Peso en Unidades Indexadas (UI)"),
    ("UYU", "858", 2, "Peso Uruguayo"),
    ("UYW", "927", 4, "Unidad Previsional"),
    ("UZS", "860", 2, "Uzbekistan Sum"),
    ("VED", "926", 2, "Bolívar Soberano (VED)"),
    ("VES", "928", 2, "Bolívar Soberano"),
    ("VND", "704", 0, "Dong"),
    ("VUV", "548", 0, "Vatu"),
    ("WST", "882", 2, "Tala"),
    ("XAD", "396", 2, "Arab Accounting Dinar"),
    ("XAF", "950", 0, "CFA Franc BEAC"),
    ("XCD", "951", 2, "East Caribbean Dollar"),
    ("XCG", "532", 2, "Caribbean Guilder"),
    ("XOF", "952", 0, "CFA Franc BCEAO"),
    ("XPF", "953", 0, "CFP Franc"),
    ("YER", "886", 2, "Yemeni Rial"),
    ("ZAR", "710", 2, "Rand"),
    ("ZMW", "967", 2, "Zambian Kwacha"),
    ("ZWG", "924", 2, "Zimbabwe Gold"),
)

CURRENCIES: Mapping[str, Currency] = MappingProxyType(
    {code: Currency(code, numeric, exponent, name) for code, numeric, exponent, name in _TABLE}
)
"""Every active ISO 4217 currency with a minor unit, keyed by upper-case alphabetic code."""

# Stripe's published minimum charge amounts, in minor units of each currency.
_MIN_CHARGE_AMOUNTS: Mapping[str, int] = MappingProxyType(
    {
        "USD": 50,  # $0.50
        "AED": 200,  # 2.00 AED
        "AUD": 50,  # A$0.50
        "BGN": 100,  # 1.00 BGN
        "BRL": 50,  # R$0.50
        "CAD": 50,  # C$0.50
        "CHF": 50,  # 0.50 CHF
        "CZK": 1500,  # 15.00 CZK
        "DKK": 250,  # 2.50 DKK
        "EUR": 50,  # 0.50 EUR
        "GBP": 30,  # 0.30 GBP
        "HKD": 400,  # HK$4.00
        "HUF": 17500,  # 175.00 HUF
        "INR": 50,  # 0.50 INR
        "JPY": 50,  # 50 JPY (no minor unit)
        "MXN": 1000,  # 10.00 MXN
        "MYR": 200,  # 2.00 MYR
        "NOK": 300,  # 3.00 NOK
        "NZD": 50,  # NZ$0.50
        "PLN": 200,  # 2.00 PLN
        "RON": 200,  # 2.00 RON
        "SEK": 300,  # 3.00 SEK
        "SGD": 50,  # S$0.50
        "THB": 1000,  # 10.00 THB
    }
)

MAX_CHARGE_AMOUNT = 99_999_999
"""The largest charge, in minor units, for every currency (Stripe's eight-digit limit)."""

_MAX_SHOWN = 16  # characters of a rejected code quoted back in an error message


def get_currency(code: str) -> Currency:
    """Return the currency for an ISO 4217 alphabetic code, case-insensitively.

    Raises :class:`UnknownCurrencyError` for anything that is not the three ASCII letters of
    a code in :data:`CURRENCIES`: non-strings, other lengths, surrounding whitespace,
    withdrawn or "N.A." codes (XAU, XXX...) and numeric codes ("840").
    """
    if not isinstance(code, str):
        raise UnknownCurrencyError(
            f"currency must be a str ISO 4217 alphabetic code such as 'USD', "
            f"not {type(code).__name__}",
            param="currency",
        )
    # isascii() first: str.upper() maps some non-ASCII letters onto ASCII ("\u017f" -> "S").
    currency = CURRENCIES.get(code.upper()) if len(code) == 3 and code.isascii() else None
    if currency is None:
        shown = code if len(code) <= _MAX_SHOWN else code[:_MAX_SHOWN] + "..."
        raise UnknownCurrencyError(
            f"unknown currency {shown!r}: expected an active ISO 4217 alphabetic code with a "
            f"minor unit, such as 'USD' or 'eur'",
            param="currency",
        )
    return currency


def min_charge_amount(code: str) -> int:
    """The smallest amount, in minor units, that may be charged in this currency.

    Stripe's published minimum where it has one (USD 50, JPY 50, GBP 30...), else 1.
    Raises :class:`UnknownCurrencyError` for an unknown currency.
    """
    return _MIN_CHARGE_AMOUNTS.get(get_currency(code).code, 1)


def max_charge_amount(code: str) -> int:
    """The largest amount, in minor units, that may be charged in this currency (99,999,999).

    Raises :class:`UnknownCurrencyError` for an unknown currency.
    """
    get_currency(code)
    return MAX_CHARGE_AMOUNT
