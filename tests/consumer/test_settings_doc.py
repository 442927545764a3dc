"""Every setting read from the environment has its row in the README's settings table."""

from __future__ import annotations

import re
from pathlib import Path

from api.settings import ApiSettings
from consumer.settings import ConsumerSettings, WebhookSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_row_in_the_readme():
    rows = set(re.findall(r"^\| `(INSIDERS_[A-Z0-9_]+)`", README.read_text(), re.MULTILINE))
    fields = {
        f"INSIDERS_{name.upper()}"
        for settings in (ConsumerSettings, WebhookSettings, ApiSettings)
        for name in settings.model_fields
    }
    assert sorted(fields - rows) == []
