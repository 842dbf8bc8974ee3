"""Server processes' settings with ``testing.recording_hasher`` as the only password hasher (the test's own
override of ``PASSWORD_HASHERS``; everything else is the service's, from the environment)."""

from aa_site.settings import *  # noqa: F403

PASSWORD_HASHERS = ["testing.recording_hasher.RecordingHasher"]
