from pathlib import Path

from services.cli.schemas import SCHEMA_DIR, render


def test_checked_in_schemas_match_the_models():
    rendered = render()
    on_disk = {p.name: p.read_text() for p in Path(SCHEMA_DIR).glob("*.schema.json")}
    assert set(on_disk) == set(rendered), "run `streamrec schemas write`"
    stale = [name for name, text in rendered.items() if on_disk[name] != text]
    assert not stale, f"stale schemas {stale}: run `streamrec schemas write`"


def test_schemas_require_the_identity_fields():
    schema = __import__("json").loads(render()["interaction.schema.json"])
    assert {"event_id", "user_id", "item_id", "type", "timestamp"} <= set(schema["required"])
