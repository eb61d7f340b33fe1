"""The OpenAPI document tells the truth: real answers of every endpoint have a status code its entry
lists, a content type it lists, and a JSON body that validates against the schema it names.

One app without a worker (queued jobs stay queued), a tiny random-weight model and small generated
images, with a token set so that 401 is real too.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import TypeAdapter

from landsentry.api import schemas
from landsentry.api.app import create_app
from landsentry.api.settings import Settings
from tests.conftest import ROOT

TOKEN = {"Authorization": "Bearer t0ken"}


def png(h: int, w: int, seed: int = 0, mask: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    array = np.zeros((h, w), np.uint8) if mask else rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    if mask:
        array[10:30, 10:40] = 1
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path_factory.mktemp("openapi"), model=tiny_checkpoint, worker=False,
                                 token="t0ken", inline_max_pixels=100 * 100, max_upload_mb=1, replay=())
    with TestClient(create_app(settings)) as c:
        c.doc = c.get("/openapi.json").json()
        yield c


def schema_name(schema: dict, body: dict) -> str:
    """The component a response schema names: a $ref, or the discriminator's choice for this body."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    choice = schema["discriminator"]
    return choice["mapping"][body[choice["propertyName"]]].rsplit("/", 1)[-1]


def check(client, path: str, r) -> dict | None:
    """Assert `r` (an answer from the route `path`) is what the document says; returns its JSON body."""
    method = r.request.method.lower()
    responses = client.doc["paths"][path][method]["responses"]
    assert str(r.status_code) in responses, f"{method.upper()} {path} answered {r.status_code}: not in {sorted(responses)}"
    if r.status_code == 204:
        assert not r.content
        return None
    media = r.headers["content-type"].split(";")[0]
    content = responses[str(r.status_code)]["content"]
    assert media in content, f"{method.upper()} {path} answered {media}: not in {sorted(content)}"
    schema = content[media]["schema"]
    if schema.get("format") == "binary":
        return None  # a file download
    body = r.json()
    name = schema_name(schema, body)
    adapter = TypeAdapter(getattr(schemas, name))
    own = adapter.json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    own.pop("$defs", None)  # the document lists those as components of their own
    assert client.doc["components"]["schemas"][name] == own, name
    # validates, and nothing is dropped or added on the way (no undocumented keys)
    assert adapter.dump_python(adapter.validate_python(body), mode="json") == body, name
    return body


def test_no_default_validation_error_schema_and_every_refusal_is_a_detail(client):
    doc = client.doc
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)


def test_file_downloads_document_their_media_types(client):
    for path in ("/v1/jobs/{job_id}/files/{name}", "/v1/examples/files/{name}"):
        content = client.doc["paths"][path]["get"]["responses"]["200"]["content"]
        assert "image/tiff" in content and all(c["schema"]["format"] == "binary" for c in content.values())


def test_real_answers_match_the_document(client):
    check(client, "/v1/health", client.get("/v1/health"))
    check(client, "/v1/classes", client.get("/v1/classes"))

    # interpret: 200 finished (flags inline), 202 queued (over the inline limit), 415, 401, 413
    done = check(client, "/v1/interpret", client.post("/v1/interpret", headers=TOKEN, files={"image": ("a.png", png(64, 96))}))
    assert done["status"] == "done" and done["result"]["flags"]["type"] == "FeatureCollection"
    queued = check(client, "/v1/interpret", client.post("/v1/interpret", headers=TOKEN, files={"image": ("b.png", png(128, 128))}))
    assert queued["status"] == "queued" and queued["result"] is None
    check(client, "/v1/interpret", client.post("/v1/interpret", headers=TOKEN, files={"image": ("c.txt", b"just text")}))
    check(client, "/v1/interpret", client.post("/v1/interpret", files={"image": ("a.png", png(64, 96))}))
    big = (ROOT / "sample_tiles" / "spacenet_atlanta_pan.tif").read_bytes()  # 1.6 MB > 1 MB
    assert check(client, "/v1/interpret", client.post("/v1/interpret", headers=TOKEN, files={"image": ("t.tif", big)})) is not None

    # jobs: one, the list, files (typed by suffix), 404
    check(client, "/v1/jobs/{job_id}", client.get(f"/v1/jobs/{done['id']}"))
    listed = check(client, "/v1/jobs", client.get("/v1/jobs"))
    assert {j["id"] for j in listed["jobs"]} >= {done["id"], queued["id"]}
    for url in (done["result"]["files"]["overlay"], done["result"]["files"]["classes_tif"], done["result"]["files"]["flags"]):
        check(client, "/v1/jobs/{job_id}/files/{name}", client.get(url))
    check(client, "/v1/jobs/{job_id}", client.get("/v1/jobs/j_nope"))
    check(client, "/v1/jobs/{job_id}/files/{name}", client.get(f"/v1/jobs/{done['id']}/files/landsentry.db"))

    # samples: 201, list, 404 job, 422 bad mask, 204 delete, 404 delete
    sample = check(client, "/v1/samples", client.post("/v1/samples", headers=TOKEN, data={"job_id": done["id"]},
                                                      files={"mask": ("m.png", png(64, 96, mask=True))}))
    check(client, "/v1/samples", client.post("/v1/samples", headers=TOKEN, files={"image": ("i.png", png(64, 96)),
                                                                                   "mask": ("m.png", png(64, 96, mask=True))}))
    check(client, "/v1/samples", client.get("/v1/samples"))
    check(client, "/v1/samples", client.post("/v1/samples", headers=TOKEN, data={"job_id": "j_nope"},
                                             files={"mask": ("m.png", png(64, 96, mask=True))}))
    check(client, "/v1/samples", client.post("/v1/samples", headers=TOKEN, files={"image": ("i.png", png(64, 96)),
                                                                                   "mask": ("m.png", png(64, 80, mask=True))}))
    check(client, "/v1/samples/{sample_id}", client.delete(f"/v1/samples/{sample['id']}", headers=TOKEN))
    check(client, "/v1/samples/{sample_id}", client.delete(f"/v1/samples/{sample['id']}", headers=TOKEN))

    # train: 202 queued, 409 while it is, 422 bad options; the list then holds both kinds of job
    train = check(client, "/v1/train", client.post("/v1/train", headers=TOKEN, json={"epochs": 1, "steps_per_epoch": 1}))
    assert train["type"] == "train" and train["kind"] is None
    check(client, "/v1/train", client.post("/v1/train", headers=TOKEN))
    check(client, "/v1/train", client.post("/v1/train", headers=TOKEN, json={"epochs": 0}))
    assert {j["type"] for j in check(client, "/v1/jobs", client.get("/v1/jobs"))["jobs"]} == {"interpret", "train"}
    check(client, "/v1/jobs/{job_id}", client.get(f"/v1/jobs/{train['id']}"))

    # models: list, activate, 404
    models = check(client, "/v1/models", client.get("/v1/models"))
    check(client, "/v1/models/{model_id}/activate", client.post(f"/v1/models/{models['active']}/activate", headers=TOKEN))
    check(client, "/v1/models/{model_id}/activate", client.post("/v1/models/m_nope/activate", headers=TOKEN))

    # examples: list, a file, 404
    examples = check(client, "/v1/examples", client.get("/v1/examples"))
    for example in examples["examples"]:
        for url in example["files"].values():
            check(client, "/v1/examples/files/{name}", client.get(url))
    check(client, "/v1/examples/files/{name}", client.get("/v1/examples/files/README.md"))
