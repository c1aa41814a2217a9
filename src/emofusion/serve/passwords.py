"""Which passwords are too weak to accept: short, blank, one repeated character, the account's
own email, or among the passwords guessed first (the most common ones of 8+ characters in
published breach lists, written down here)."""

from __future__ import annotations

MIN_PASSWORD = 8

COMMON_PASSWORDS = frozenset("""
password password1 password12 password123 password1234 passw0rd p@ssw0rd p@ssword pa55word passwort
12345678 123456789 1234567890 0123456789 12341234 11223344 12344321 87654321 98765432 987654321
11111111 00000000 88888888 99999999 12121212 13131313 10203040 147258369 147852369 123123123
qwertyui qwertyuiop qwerty123 qwerty12 1qaz2wsx 1q2w3e4r 1q2w3e4r5t zaq12wsx zxcvbnm1 asdfghjk
asdfghjkl q1w2e3r4 qazwsxedc 1qazxsw2 abcd1234 abc12345 abcdefgh abcdefg1 a1b2c3d4 aa123456
iloveyou iloveyou1 sunshine sunshine1 princess princess1 football football1 baseball basketball
superman batman123 starwars trustno1 whatever welcome1 welcome123 letmein1 letmein123 admin123
administrator changeme changeme1 passpass computer internet michelle jennifer jessica1 charlie1
master123 shadow12 monkey123 dragon12 1234qwer qwer1234 midnight mercedes corvette samantha
chocolate butterfly blink182 liverpool arsenal1 chelsea1 fuckyou1 secret123 default1 security
unknown1 freedom1 football12 hello123 helloworld lovelove loveyou1 iloveyou2 summer2024 winter2024
spring2024 autumn2024 summer2025 winter2025 emofusion emofusion1
""".split())


def weakness(password: str, email: str = "") -> str | None:
    """Why `password` is refused (a sentence for the user), or None when it is acceptable."""
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    if not password.strip():
        return "the password cannot be only spaces"
    if len(set(password)) == 1:
        return "the password cannot be one character repeated"
    lowered = password.strip().lower()
    if lowered in COMMON_PASSWORDS:
        return "this password is among the most common ones; choose another"
    if email and lowered == email.strip().lower():
        return "the password cannot be your email address"
    return None
