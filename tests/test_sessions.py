"""Multi-turn sessions (`compose.session`): the combination rule, the Python API, bounds and expiry,
the /sessions and /browse endpoints end to end, and `/search` with rerankers."""

from __future__ import annotations


import pytest
from fastapi.testclient import TestClient
from test_service_support import INDEX, catalog, tiny_encoder  # noqa: F401  (fixtures)

from opensearch_cir.compose import session as sessions
from opensearch_cir.compose.session import Session, SessionStore, Turn, combine
from opensearch_cir.errors import InputError
from opensearch_cir.service import create_app


# -- the rule ------------------------------------------------------------------------------------


def test_combine_rule():
    first = Turn(text="in red", reference_ids=["a"])
    liked = Turn(text="now longer", liked=["b", "c"], rejected=["d"])
    plain = Turn(text="", negative="a hood", rejected=["e"])
    combined = combine([first, liked, plain])
    assert combined.reference_ids == ["b", "c"]  # "this one" (several: averaged) replaces the reference
    assert combined.text == "in red, now longer"  # modifications accumulate, oldest first
    assert combined.negative == "a hood" and combined.rejected == ["d", "e"]
    restart = combine([first, liked, Turn(text="in blue", images=[b"png"])])
    assert restart.images == [b"png"] and restart.reference_ids == [] and restart.text == "in blue"  # a given image starts over
    assert restart.rejected == ["d"]  # rejections stay excluded
    both = combine([first, Turn(reference_ids=["x"], liked=["b"])])
    assert both.reference_ids == ["x"]  # a given reference wins over "this one" in the same turn
    assert combine([Turn(text="red", reference_ids=["a"]), Turn(rejected=["a"])]).reference_ids == []


# -- the Python API --------------------------------------------------------------------------------


@pytest.fixture()
def session(catalog):
    return Session(catalog.client, INDEX, catalog.encoder, k=5, strategy="hybrid")


def _doc_id(catalog, scene) -> str:
    from opensearch_cir.ingest.records import document_id

    return document_id(catalog.scenes.image_path(scene).read_bytes())


def test_session_turns_feedback_and_rerun(session, catalog):
    query = catalog.scenes.queries[0]
    start = _doc_id(catalog, query.reference)
    first = session.turn(reference_ids=[start], text=query.text)
    assert len(first) == 5 and start not in first.ids
    chosen, rejected = first.ids[1], first.ids[0]
    second = session.turn(text="make it yellow", liked=[chosen], rejected=[rejected])
    turn = session.turns[-1]
    assert turn.query["reference_ids"] == [chosen] and turn.query["text"] == f"{query.text}, make it yellow"
    assert chosen not in second.ids and rejected not in second.ids  # the reference and the rejected are excluded
    third = session.turn(text="")  # feedback persists: the rejected result stays out
    assert rejected not in third.ids and session.turns[-1].query["excluded"] == [rejected]
    with pytest.raises(InputError, match="never shown"):
        session.turn(liked=["not-a-shown-id"])
    session.turn(text="add a small blue circle", keep=1)  # re-run from turn 1: later turns dropped
    assert len(session.turns) == 2 and session.turns[-1].query["text"] == f"{query.text}, add a small blue circle"


def test_rejection_pushes_the_query_away(catalog):
    from opensearch_cir.compose.prepare import prepare
    from opensearch_cir.compose.query import CompositeQuery

    session = Session(catalog.client, INDEX, catalog.encoder, k=5, strategy="text_only")
    shown = session.turn(text="a red circle").ids
    prepared = prepare(catalog.client, INDEX, CompositeQuery(text="a red circle", strategy="text_only"), catalog.encoder)
    pushed = session._push_away(prepared, [shown[0]])
    rejected_vector = session._rejected_vector(shown[0])
    weights = prepared.query.weights
    assert pushed.excluded_ids == [shown[0]]
    assert pushed.vector("text_only", weights) @ rejected_vector < prepared.vector("text_only", weights) @ rejected_vector


def test_bounds_and_expiry(catalog, monkeypatch):
    monkeypatch.setattr(sessions, "MAX_TURNS", 2)
    session = Session(catalog.client, INDEX, catalog.encoder, k=3)
    session.turn(text="a red circle")
    session.turn(text="make it blue")
    with pytest.raises(InputError, match="at most 2 turns"):
        session.turn(text="smaller")
    with pytest.raises(InputError, match="no reference and no text"):
        Session(catalog.client, INDEX, catalog.encoder).turn()
    with pytest.raises(InputError):
        Session(catalog.client, INDEX, catalog.encoder, strategy="nope")
    store = SessionStore(ttl_s=60, max_sessions=2)
    a = store.create(catalog.client, INDEX, catalog.encoder)
    b = store.create(catalog.client, INDEX, catalog.encoder)
    a.last_used -= 10  # a is the longest idle: dropped for the third
    store.create(catalog.client, INDEX, catalog.encoder)
    assert store.get(a.id) is None and store.get(b.id) is b and len(store) == 2
    b.last_used -= 61
    assert store.get(b.id) is None and len(store) == 1  # expired


# -- over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture()
def api(catalog) -> TestClient:
    return TestClient(create_app(catalog.settings, client=catalog.client, encoder=catalog.encoder),
                      raise_server_exceptions=False)


def test_sessions_api_end_to_end(api, catalog):
    created = api.post("/sessions", data={"k": "4", "strategy": "hybrid", "rerank": "exact"})
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    assert created.json()["turns"] == [] and created.json()["expires_in_s"] > 0
    png = catalog.reference_png(0)
    first = api.post(f"/sessions/{session_id}/turns", files={"images": ("ref.png", png, "image/png")},
                     data={"text": catalog.scenes.queries[0].text})
    assert first.status_code == 200, first.text
    shown = [r["id"] for r in first.json()["results"]]
    assert len(shown) == 4 and first.json()["number"] == 1 and first.json()["uploaded_images"] == 1
    assert all(r["image_url"].endswith(r["id"]) for r in first.json()["results"])
    second = api.post(f"/sessions/{session_id}/turns",
                      data={"text": "make it yellow", "liked": shown[2], "rejected": [shown[0], shown[1]]})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["query"]["reference_ids"] == [shown[2]] and body["query"]["excluded"] == shown[:2]
    assert not {shown[0], shown[1], shown[2]} & {r["id"] for r in body["results"]}
    state = api.get(f"/sessions/{session_id}").json()
    assert [t["text"] for t in state["turns"]] == [catalog.scenes.queries[0].text, "make it yellow"]
    assert state["settings"]["rerank"] == ["exact"] and state["turns"][1]["liked"] == [shown[2]]
    bad = api.post(f"/sessions/{session_id}/turns", data={"rejected": "never-shown"})
    assert bad.status_code == 422 and "never shown" in bad.json()["detail"]
    rerun = api.post(f"/sessions/{session_id}/turns", data={"text": "add a small blue circle", "keep": "1"})
    assert rerun.status_code == 200 and rerun.json()["number"] == 2
    assert api.delete(f"/sessions/{session_id}").status_code == 204
    gone = api.post(f"/sessions/{session_id}/turns", data={"text": "red"})
    assert gone.status_code == 404 and "unknown or expired" in gone.json()["detail"]
    assert api.post("/sessions", data={"rerank": "http://127.0.0.1:1/x"}).status_code == 422
    assert api.post("/sessions", data={"strategy": "nope"}).status_code == 422


def test_browse_pages_and_filters(api, catalog):
    first = api.get("/browse", params={"size": 10}).json()
    second = api.get("/browse", params={"size": 10, "page": 3}).json()
    assert first["total"] == len(catalog.records) and len(first["items"]) == 10
    assert len(second["items"]) == len(catalog.records) - 20
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}
    red = api.get("/browse", params={"filters": '{"metadata.colours": "red"}', "size": 100}).json()
    assert red["items"] and all("red" in item["metadata"]["colours"] for item in red["items"])
    worded = api.get("/browse", params={"q": "circle"}).json()
    assert worded["items"] and all("circle" in item["caption"] for item in worded["items"])
    assert api.get("/browse", params={"size": 1000}).status_code == 422


def test_search_endpoint_reranks(api, catalog):
    response = api.post("/search", data={"text": "a red circle", "rerank": "exact,intersection", "explain": "true", "k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"]["rerank"] == ["exact", "intersection"]
    assert "rerank:exact" in body["results"][0]["scores"]
    refused = api.post("/search", data={"text": "a red circle", "rerank": "http://127.0.0.1:9/x"})
    assert refused.status_code == 422 and "external rerankers" in refused.json()["detail"]
    assert api.post("/search", data={"text": "red", "rerank": "exact:blend=7"}).status_code == 422


# -- the multi-turn benchmark ---------------------------------------------------------------------


class _ScriptedSession:
    """Answers each turn with the next scripted result list and records the turn's inputs."""

    def __init__(self, shown: list[list[str]]):
        self.shown, self.calls = list(shown), []

    def turn(self, **inputs):
        self.calls.append(inputs)

        class Response:
            ids = self.shown.pop(0)
        return Response()


def test_simulated_user_picks_rejects_and_names_one_change():
    import random

    from opensearch_cir.eval.multiturn import Episode, run_episode

    target = ("Navy Blue", "Shirts", "Women", "Casual")
    attributes_of = {
        "start": ("Black", "Tshirts", "Men", "Casual"),
        "closer": ("Navy Blue", "Tshirts", "Men", "Casual"),  # 2 of 4 (start has 1)
        "worse": ("Red", "Jeans", "Men", "Sports"),           # 0 of 4
        "hit": target,
    }
    episode = Episode("e", "start", target, ["colour", "article_type", "gender"])
    session = _ScriptedSession([["worse", "closer"], ["hit"]])
    assert run_episode(episode, attributes_of, session, max_turns=5, rejects=True, rng=random.Random(0)) == 2
    first, second = session.calls
    assert first["reference_ids"] == ["start"] and "navy blue" in first["text"].lower()
    assert second["liked"] == ["closer"] and second["rejected"] == ["worse"]
    assert "shirt" in second["text"].lower() and "navy" not in second["text"].lower()  # the next missing attribute
    never = _ScriptedSession([["worse"]] * 3)
    assert run_episode(episode, attributes_of, never, max_turns=3, rejects=False, rng=random.Random(0)) is None
    assert all("rejected" not in call and "liked" not in call for call in never.calls[1:])


@pytest.fixture(scope="module")
def toy_fashion(tmp_path_factory):
    import test_eval

    return test_eval.fashion_dir.__wrapped__(tmp_path_factory)


def test_multiturn_and_rerank_benchmarks_end_to_end(toy_fashion, tiny_encoder, tmp_path):
    from opensearch_cir.engines import connect
    from opensearch_cir.eval import multiturn
    from opensearch_cir.eval import rerank as rerank_eval
    from opensearch_cir.eval.report import write_report

    client = connect(f"embedded://{tmp_path / 'engine'}")
    result = multiturn.run(toy_fashion, client, tiny_encoder, n_episodes=6, products="all")
    assert result["episodes"] == 6
    single, *sessions_rows = result["rows"].values()
    assert 0 <= single["success@10 after 1 turn"] <= 1 and single["success@10 after 5 turns"] is None
    for row in sessions_rows:
        values = list(row.values())
        assert values == sorted(values) and all(0 <= v <= 1 for v in values)  # cumulative over turns
    paths = write_report(result, tmp_path / "out", "multiturn-fashion")
    assert "| session: one change per turn, picks the best |" in paths["markdown"].read_text()

    reranked = rerank_eval.run("fashion", client, tiny_encoder, data=toy_fashion, tune_subset=8, depth=20,
                               products="all", n_queries=30)
    assert {f"+ {chain} (γ=1)" for chain in rerank_eval.RERANK_CHAINS} <= set(reranked["strategies"])
    assert set(reranked["tuned"]["blend"].values()) <= set(rerank_eval.BLENDS)
    assert all(value >= 0 for value in reranked["latency_ms"].values())
    assert "| hybrid |" in write_report(reranked, tmp_path / "out", "rerank-fashion")["markdown"].read_text()


def test_session_endpoints_refuse_misnamed_fields(api):
    """As /search does (issue 13 item 5): a misnamed field is refused, not silently ignored."""
    refused = api.post("/sessions", data={"strategie": "hybrid"})
    assert refused.status_code == 422 and "strategy" in refused.json()["detail"]
    session = api.post("/sessions", data={"k": "3"}).json()
    turn = api.post(f"/sessions/{session['id']}/turns", data={"txt": "a red circle"})
    assert turn.status_code == 422 and "text" in turn.json()["detail"]
