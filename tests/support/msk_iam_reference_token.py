"""The reference MSK IAM token (aws-msk-iam-sasl-signer-python) for fixed
credentials, region and signing time, printed on stdout.

    python msk_iam_reference_token.py REGION ACCESS_KEY SECRET_KEY SESSION_TOKEN YYYYMMDDTHHMMSSZ

botocore's SigV4QueryAuth reads the clock with datetime.datetime.utcnow();
this freezes that clock at the given time, so the signature is the one the
reference signer would have made at that second.
"""
import datetime
import sys

import botocore.auth
from botocore.credentials import CredentialProvider, Credentials

from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

region, access_key, secret_key, session_token, signing_time = sys.argv[1:6]
frozen = datetime.datetime.strptime(signing_time, "%Y%m%dT%H%M%SZ")


class FrozenDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return frozen

    @classmethod
    def now(cls, tz=None):
        return frozen.replace(tzinfo=datetime.timezone.utc).astimezone(tz) if tz else frozen


class FrozenDatetimeModule:
    pass


FrozenDatetimeModule.datetime = FrozenDatetime
FrozenDatetimeModule.timezone = datetime.timezone
FrozenDatetimeModule.timedelta = datetime.timedelta
botocore.auth.datetime = FrozenDatetimeModule


class Fixed(CredentialProvider):
    METHOD = "fixed"

    def load(self):
        return Credentials(access_key, secret_key, session_token or None)


token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
    region, Fixed()
)
print(token)
print(expiry_ms)
