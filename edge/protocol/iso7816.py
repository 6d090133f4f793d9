"""ISO/IEC 7816-4 numbers, declared once: status words, instruction bytes, class-byte bits, the eMRTD AID.

The reader side (``edge.protocol``), the virtual chip (``edge.sim``) and the PC/SC driver all speak the same
interindustry commands; each used to declare the numbers it needed, so a typo on one side could hide behind the
other. Only names are here: what a status word *means* for a command (which are refusals, which a wrong key) stays
with the code that decides it.
"""

from __future__ import annotations

# --- status words (ISO/IEC 7816-4 5.1.3) ----------------------------------------------------------------------

SW_OK = 0x9000
SW_WARNING_EOF = 0x6282  # end of file reached before Le bytes
SW_VERIFICATION_FAILED = 0x6300  # authentication failed (a wrong MRZ key or PACE password)
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_AUTH_METHOD_BLOCKED = 0x6983
SW_REF_DATA_NOT_USABLE = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_CURRENT_EF = 0x6986  # command not allowed: no EF selected (some chips' answer to a read by SFI)
SW_SM_MISSING = 0x6987
SW_SM_INCORRECT = 0x6988
SW_WRONG_DATA = 0x6A80
SW_FUNC_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_INCORRECT_P1P2 = 0x6A86
SW_REF_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00

#: SW1 of 61xx: the command worked and xx more bytes wait for GET RESPONSE (xx = 00: 256 or more).
SW1_BYTES_REMAINING = 0x61
#: SW1 of 6Cxx: wrong Le; the same command with Le = xx gets the answer (xx = 00: 256).
SW1_WRONG_LE = 0x6C

# --- instruction bytes ------------------------------------------------------------------------------------------

INS_MSE = 0x22  # MANAGE SECURITY ENVIRONMENT
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_GET_CHALLENGE = 0x84
INS_GENERAL_AUTHENTICATE = 0x86
INS_INTERNAL_AUTHENTICATE = 0x88
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_READ_BINARY_ODD = 0xB1  # offset in a data object: files beyond 32 KB
INS_GET_RESPONSE = 0xC0
INS_UPDATE_BINARY = 0xD6
INS_PUT_DATA = 0xDA
INS_CREATE_FILE = 0xE0

# --- class byte ---------------------------------------------------------------------------------------------------

#: Secure messaging with the header authenticated (ISO/IEC 7816-4 5.4.1, as ICAO 9303-11 uses it).
CLA_SM = 0x0C
#: Command chaining: more commands of the same operation follow (PACE's GENERAL AUTHENTICATE steps).
CLA_CHAINING = 0x10
#: The logical channel number (a GET RESPONSE goes on the channel of the command it continues).
CLA_CHANNEL = 0x03

# --- application identifiers ------------------------------------------------------------------------------------

#: The eMRTD application (ICAO 9303-10 3.6.2); the CCCD's chip carries it.
EMRTD_AID = bytes.fromhex("A0000002471001")
