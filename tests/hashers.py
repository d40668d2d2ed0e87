"""A password hasher for tests: Django's PBKDF2 at one iteration instead of 1,000,000 (0.5-0.8 s a hash here).

Its hashes keep PBKDF2's algorithm name and state their iteration count, so a server the tests start with the
real settings (scripts/run, a qcluster) still verifies them, with Django's own hasher."""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class OneIterationPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1
