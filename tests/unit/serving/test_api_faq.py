"""GET /faq and /admin/faq through the service: answers in English, Chinese and mixed text, abstaining
under the threshold, live upsert / delete (persisted in <home>/faq.json), scopes and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from test_api_helpers import Api, api, running_api, store_url  # noqa: F401

from lmrec.serving.faq import DEMO_FAQ_PATH, FAQ_FILE, read_faq_file, seed_demo_faq

SHIP = {"questions": ["how long does shipping take", "when will my parcel arrive"],
        "answer": "Orders arrive in 3-5 days.", "intent": "delivery", "language": "en"}
RETURN = {"questions": ["how do I return an item"], "answer": "Within 30 days.", "intent": "returns"}
SHIP_ZH = {"questions": ["发货要多久", "快递几天能到"], "answer": "3到5天送达。", "intent": "delivery", "language": "zh"}


def _fill(api: Api) -> None:
    for entry_id, body in (("ship", SHIP), ("return", RETURN), ("ship-zh", SHIP_ZH)):
        r = api.client.put(f"/admin/faq/{entry_id}", json=body, headers=api.admin)
        assert r.status_code == 200, r.text
        assert r.json()["entry_id"] == entry_id and r.json()["questions"] == body["questions"]


def test_faq_answers_and_live_edits(api: Api) -> None:
    empty = api.client.get("/faq", params={"q": "where is my parcel"}, headers=api.read)
    assert empty.status_code == 200, empty.text
    assert empty.json()["abstained"] is True and empty.json()["answer"] is None and empty.json()["alternatives"] == []
    _fill(api)
    r = api.client.get("/faq", params={"q": "when will my parcel arrive?", "k": 3}, headers=api.read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["abstained"] is False and body["answer"] == SHIP["answer"] and body["intent"] == "delivery"
    assert body["entry_id"] == "ship" and body["matched_question"] == "when will my parcel arrive"
    assert isinstance(body["score"], float) and body["threshold"] is None and "total" in body["timings_ms"]
    assert 1 <= len(body["alternatives"]) <= 2 and all(a["entry_id"] != "ship" for a in body["alternatives"])
    zh = api.client.get("/faq", params={"q": "快递几天能到"}, headers=api.read).json()
    assert zh["entry_id"] == "ship-zh" and zh["answer"] == SHIP_ZH["answer"]
    mixed = api.client.get("/faq", params={"q": "我想 return an item"}, headers=api.read)
    assert mixed.status_code == 200 and mixed.json()["entry_id"] == "return"
    # replace, then delete: the next question sees the change; the file keeps it
    changed = {**RETURN, "answer": "Within 60 days now."}
    assert api.client.put("/admin/faq/return", json=changed, headers=api.admin).status_code == 200
    assert api.client.get("/faq", params={"q": "how do I return an item"},
                          headers=api.read).json()["answer"] == "Within 60 days now."
    listed = api.client.get("/admin/faq", headers=api.admin).json()
    assert listed["total"] == 3 and {e["entry_id"] for e in listed["entries"]} == {"ship", "return", "ship-zh"}
    assert api.client.delete("/admin/faq/return", headers=api.admin).json() == {"deleted": True}
    gone = api.client.delete("/admin/faq/return", headers=api.admin)
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    after = api.client.get("/faq", params={"q": "how do I return an item", "k": 5}, headers=api.read).json()
    assert after["entry_id"] != "return" and all(a["entry_id"] != "return" for a in after["alternatives"])
    saved = read_faq_file(api.engine.config.home / FAQ_FILE)
    assert {e["entry_id"] for e in saved["entries"]} == {"ship", "ship-zh"}
    metrics = api.client.get("/metrics", headers=api.admin).text
    assert 'route="/faq"' in metrics


def test_faq_abstains_under_the_threshold(tmp_path: Path, store_url: str) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    (home / FAQ_FILE).write_text(json.dumps({"threshold": 1e9, "entries": [{"entry_id": "ship", **SHIP}]}))
    with running_api(home, store_url) as a:
        body = a.client.get("/faq", params={"q": "how long does shipping take"}, headers=a.read).json()
        assert body["abstained"] is True and body["answer"] is None and body["threshold"] == 1e9
        assert body["intent"] == "delivery" and body["matched_question"] == "how long does shipping take"


def test_faq_scopes_and_bad_input(api: Api) -> None:
    assert api.client.get("/faq", params={"q": "x"}).status_code == 401
    assert api.client.put("/admin/faq/a", json=SHIP, headers=api.write).status_code == 403
    for params, field in (({"q": ""}, "q"), ({"q": "   "}, "q"), ({"q": "x" * 513}, "q"), ({}, "q"),
                          ({"q": "ok", "k": 0}, "k"), ({"q": "ok", "k": 21}, "k")):
        r = api.client.get("/faq", params=params, headers=api.read)
        assert r.status_code == 422, (params, r.text)
        assert any(d["loc"][-1] == field for d in r.json()["detail"]), r.json()
    for body, field in (({**SHIP, "questions": []}, "questions"), ({**SHIP, "questions": [" "]}, "questions"),
                        ({**SHIP, "answer": ""}, "answer"), ({**SHIP, "extra": 1}, "extra"),
                        ({**SHIP, "questions": ["x" * 513]}, "questions")):
        r = api.client.put("/admin/faq/a", json=body, headers=api.admin)
        assert r.status_code == 422, (body, r.text)
        assert any(field in [str(x) for x in d["loc"]] for d in r.json()["detail"]), r.json()
    assert api.client.put("/admin/faq/a%2Fb", json=SHIP, headers=api.admin).status_code in (404, 422)


def test_demo_faq_file_is_valid_and_bilingual(tmp_path: Path) -> None:
    doc = read_faq_file(DEMO_FAQ_PATH)
    langs = {e["language"] for e in doc["entries"]}
    assert langs == {"en", "zh"} and 20 <= len(doc["entries"]) <= 30 and doc["threshold"] is not None
    intents = {e["intent"] for e in doc["entries"]}
    assert all({e["language"] for e in doc["entries"] if e["intent"] == i} == {"en", "zh"} for i in intents)
    assert seed_demo_faq(tmp_path) is True and seed_demo_faq(tmp_path) is False
    assert (tmp_path / FAQ_FILE).read_bytes() == DEMO_FAQ_PATH.read_bytes()
