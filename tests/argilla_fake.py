"""A local fake of an Argilla 2.x server for tests: the REST endpoints the Argilla Python client calls
to find a workspace and a dataset, create a dataset with its fields, questions and metadata, upsert
records and search them with their responses, served in process through an ``httpx.MockTransport``
mounted on a real ``argilla.Argilla`` client (no server, no network). ``respond`` stands in for an
annotator submitting a response in Argilla's UI. It keeps what it is sent and checks what the humpback
code depends on; it is not a reimplementation of Argilla."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import httpx

API = "/api/v1"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class FakeArgilla:
    def __init__(self, users: tuple[str, ...] = ("owner", "ana", "ben")):
        self.users = {str(uuid.uuid4()): {"username": u, "role": "owner" if u == "owner" else "annotator"}
                      for u in users}
        self.me = next(i for i, u in self.users.items() if u["username"] == "owner")
        self.workspace = {"id": str(uuid.uuid4()), "name": "review", "inserted_at": _now(), "updated_at": _now()}
        self.datasets: dict[str, dict] = {}
        self.children: dict[tuple[str, str], list] = {}  # (dataset id, fields|questions|metadata-properties)
        self.records: dict[str, dict[str, dict]] = {}  # dataset id -> external id -> record
        self.requests: list[str] = []
        self.transport = httpx.MockTransport(self._handle)

    def client(self):
        import argilla as rg

        return rg.Argilla(api_url="http://argilla.fake", api_key="fake-key", retries=0,
                          mounts={"all://": self.transport})

    # what an annotator does in the UI
    def respond(self, dataset_name: str, external_id: str, username: str, values: dict, status: str = "submitted"):
        ds = next(d for d in self.datasets.values() if d["name"] == dataset_name)
        user = next(i for i, u in self.users.items() if u["username"] == username)
        rec = self.records[ds["id"]][external_id]
        rec["responses"] = [r for r in rec["responses"] if r["user_id"] != user]
        rec["responses"].append({"id": str(uuid.uuid4()), "values": {k: {"value": v} for k, v in values.items()},
                                 "status": status, "user_id": user, "inserted_at": _now(), "updated_at": _now()})

    # ------------------------------------------------------------------ the REST endpoints
    def _handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.requests.append(f"{method} {path}")
        body = json.loads(request.content) if request.content else None
        for pattern, verb, fn in self._routes():
            m = re.fullmatch(API + pattern, path)
            if m and verb == method:
                status, payload = fn(body, request, *m.groups())
                return httpx.Response(status, json=payload)
        return httpx.Response(404, json={"detail": f"the fake has no {method} {path}"})

    def _routes(self):
        return [
            ("/me", "GET", lambda b, r: (200, self._user(self.me))),
            ("/users/([^/]+)", "GET", lambda b, r, uid: (200, self._user(uid)) if uid in self.users
             else (404, {"detail": "no such user"})),
            ("/me/workspaces", "GET", lambda b, r: (200, {"items": [self.workspace]})),
            ("/workspaces/([^/]+)", "GET", lambda b, r, wid: (200, self.workspace)),
            ("/me/datasets", "GET", lambda b, r: (200, {"items": list(self.datasets.values())})),
            ("/datasets", "POST", self._create_dataset),
            ("/datasets/([^/]+)", "GET", lambda b, r, did: (200, self.datasets[did]) if did in self.datasets
             else (404, {"detail": "no such dataset"})),
            ("/datasets/([^/]+)", "PATCH", self._update_dataset),
            ("/datasets/([^/]+)", "DELETE", lambda b, r, did: (200, self.datasets.pop(did))),
            ("/datasets/([^/]+)/(fields|questions|metadata-properties|vectors-settings)", "GET",
             lambda b, r, did, kind: (200, {"items": self.children.get((did, kind), [])})),
            ("/me/datasets/([^/]+)/(metadata-properties)", "GET",
             lambda b, r, did, kind: (200, {"items": self.children.get((did, kind), [])})),
            ("/datasets/([^/]+)/(fields|questions|metadata-properties)", "POST", self._add_child),
            ("/datasets/([^/]+)/publish", "PUT", self._publish),
            ("/datasets/([^/]+)/records/bulk", "PUT", self._upsert),
            ("/datasets/([^/]+)/records/search", "POST", self._search),
            ("/datasets/([^/]+)/records", "GET", self._list),
        ]

    def _user(self, uid: str) -> dict:
        u = self.users[uid]
        return {"id": uid, "username": u["username"], "role": u["role"], "first_name": u["username"],
                "last_name": None, "inserted_at": _now(), "updated_at": _now()}

    def _create_dataset(self, body, request):
        if any(d["name"] == body["name"] for d in self.datasets.values()):
            return 409, {"detail": "a dataset with this name exists"}
        ds = {**body, "id": str(uuid.uuid4()), "status": "draft", "workspace_id": self.workspace["id"],
              "inserted_at": _now(), "updated_at": _now(), "last_activity_at": _now()}
        self.datasets[ds["id"]] = ds
        self.records[ds["id"]] = {}
        return 201, ds

    def _update_dataset(self, body, request, did):
        self.datasets[did].update({k: v for k, v in body.items() if k in ("guidelines", "allow_extra_metadata",
                                                                          "distribution", "name")})
        return 200, self.datasets[did]

    def _add_child(self, body, request, did, kind):
        child = {**body, "id": str(uuid.uuid4()), "dataset_id": did, "inserted_at": _now(), "updated_at": _now()}
        self.children.setdefault((did, kind), []).append(child)
        return 201, child

    def _publish(self, body, request, did):
        kinds = {k for (d, k) in self.children if d == did}
        if not {"fields", "questions"} <= kinds:
            return 422, {"detail": "a dataset needs fields and questions to be published"}
        self.datasets[did]["status"] = "ready"
        return 200, self.datasets[did]

    def _upsert(self, body, request, did):
        if self.datasets[did]["status"] != "ready":
            return 422, {"detail": "records go to a published dataset"}
        names = {f["name"] for f in self.children[(did, "fields")]}
        out, updated = [], []
        for item in body["items"]:
            unknown = set(item.get("fields") or {}) - names
            if unknown:
                return 422, {"detail": f"unknown fields {sorted(unknown)}"}
            ext = item["external_id"]
            old = self.records[did].get(ext)
            rec = {"id": old["id"] if old else str(uuid.uuid4()), "external_id": ext, "status": "pending",
                   "fields": item.get("fields"), "metadata": item.get("metadata") or {},
                   "suggestions": item.get("suggestions") or [], "responses": old["responses"] if old else [],
                   "vectors": {}, "dataset_id": did, "inserted_at": _now(), "updated_at": _now()}
            for s in rec["suggestions"]:
                s.setdefault("id", str(uuid.uuid4()))
            if old:
                updated.append(rec["id"])
            self.records[did][ext] = rec
            out.append(rec)
        return 200, {"items": out, "updated_item_ids": updated}

    def _list(self, body, request, did):
        offset = int(request.url.params.get("offset", 0))
        limit = int(request.url.params.get("limit", 100))
        records = list(self.records[did].values())
        return 200, {"items": records[offset:offset + limit], "total": len(records)}

    def _search(self, body, request, did):
        offset = int(request.url.params.get("offset", 0))
        limit = int(request.url.params.get("limit", 100))
        records = list(self.records[did].values())
        items = [{"record": r, "query_score": None} for r in records[offset:offset + limit]]
        return 200, {"items": items, "total": len(records)}
