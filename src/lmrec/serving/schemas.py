"""Request and response bodies of the HTTP API, with the limits that keep one request cheap.

Every limit is part of the schema (and so of /openapi.json): a malformed request is refused
with 422 and a `detail` entry whose `loc` names the field. Event batches are the exception:
they are validated event by event (see `validate_events`) so that good events can be kept
while each bad one is reported with its index, field and reason.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError,
                      ValidationInfo, field_validator)

from lmrec.stores.records import EVENT_KINDS, EventRecord, ItemRecord, UserRecord

# ---- limits -------------------------------------------------------------------------------------
MAX_ID_LEN = 256
MAX_TITLE_LEN = 1_000
MAX_TEXT_LEN = 20_000
MAX_QUERY_LEN = 1_000
MAX_CATEGORIES = 64
MAX_CATEGORY_LEN = 200
MAX_ATTRIBUTES = 64
MAX_K = 200
#: largest accepted event time (2100-01-01): catches milliseconds sent as seconds
MAX_TIMESTAMP = 4_102_444_800.0
#: default of how far past the server clock an event time may be (the `max_future_seconds` setting)
MAX_FUTURE_SECONDS = 86_400.0
#: deepest nesting of an attribute value (a list or an object inside another counts one level)
MAX_ATTRIBUTE_DEPTH = 16
# Ids: no control characters (C0, DEL, C1) and no "/" (an id is a URL path segment) anywhere,
# no whitespace at either end. The classes
# are spelled out rather than written `\s` because `\s` differs between regex engines (Python's
# includes U+0085 and U+001C-U+001F, ECMAScript's does not): this pattern means the same to
# pydantic (Rust), Python `re` and JSON-Schema clients, and it is exactly Python's `str.isspace`.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ID_PATTERN = rf"^[^{_CONTROL}{_SPACE}/](?:[^{_CONTROL}/]*[^{_CONTROL}{_SPACE}/])?$"


def check_id_text(value: str) -> str:
    """The rule of ID_PATTERN with a readable reason (a 422 names the problem, not the regex)."""
    if "/" in value:
        raise ValueError("must not contain '/' (ids are URL path segments: /items/{item_id})")
    bad = next((c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F), None)
    if bad is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(bad):04X})")
    if value and (value[0].isspace() or value[-1].isspace()):
        raise ValueError("must not start or end with whitespace")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    return value


def check_json_value(value: Any, depth: int = 0) -> Any:
    """A JSON value every store can keep and give back: finite numbers, no NUL in strings or
    keys, at most MAX_ATTRIBUTE_DEPTH levels of nesting."""
    if depth > MAX_ATTRIBUTE_DEPTH:
        raise ValueError(f"nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(str(k))
            check_json_value(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            check_json_value(v, depth + 1)
    return value


# the pattern stays in the schema (clients and generated tests read it); the check gives the reason
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN), AfterValidator(check_id_text),
               Field(json_schema_extra={"pattern": ID_PATTERN})]
#: "no NUL" where the schema can say it (titles, texts); attribute keys and values are checked, not described
NO_NUL_PATTERN = "^[^\\x00]*$"
Attributes = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN)], JsonValue],
                       AfterValidator(check_json_value)]
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN)]
EventKind = Literal["view", "click", "cart", "purchase", "rating", "impression"]
if set(EventKind.__args__) != set(EVENT_KINDS):  # type: ignore[attr-defined]
    raise ImportError(f"EventKind is out of date with lmrec.stores.records.EVENT_KINDS {EVENT_KINDS}")


class _Strict(BaseModel):
    """Unknown fields are errors (a typo like 'ittem_id' must not be silently dropped) and
    types are not coerced (`"available": 0` or `"timestamp": false` is a mistake, not a value)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ---- events -------------------------------------------------------------------------------------
class EventIn(_Strict):
    """One interaction. `timestamp` defaults to the time the server receives it; `ranking_id`
    joins the event to the ranking that showed the item (clicks on a served list)."""

    user_id: Id
    item_id: Id
    kind: EventKind = "view"
    value: float = Field(1.0, ge=-1e6, le=1e6, description="rating value, quantity, or 1")
    timestamp: float | None = Field(None, gt=0, le=MAX_TIMESTAMP,
                                    description="epoch seconds (UTC), at most `max_future_seconds` (a day by "
                                                "default) past the server clock; omit it for the server's time "
                                                "(0 is refused, not read as 'now')")
    ranking_id: Id | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("timestamp")
    @classmethod
    def _not_far_future(cls, v: float | None, info: ValidationInfo) -> float | None:
        # one far-future event would age every other event at once (decayed popularity): the
        # server clock bounds what is accepted (validation context: now, max_future_seconds)
        ctx = info.context or {}
        if v is None or "now" not in ctx:
            return v
        limit = float(ctx["now"]) + float(ctx.get("max_future_seconds", MAX_FUTURE_SECONDS))
        if v > limit:
            raise ValueError(f"is {v - float(ctx['now']):.0f} s after the server clock; at most "
                             f"{float(ctx.get('max_future_seconds', MAX_FUTURE_SECONDS)):.0f} s is accepted "
                             f"(max_future_seconds)")
        return v

    def to_record(self, now: float) -> EventRecord:
        return EventRecord(user_id=self.user_id, item_id=self.item_id, kind=self.kind, value=self.value,
                           timestamp=self.timestamp if self.timestamp is not None else now,
                           ranking_id=self.ranking_id)


class RejectedEvent(BaseModel):
    index: int = Field(description="position of the event in the batch (0-based)")
    field: str = Field(description="the field at fault, dotted ('kind', 'value'); 'event' for the whole event")
    reason: str


class EventsResponse(BaseModel):
    accepted: int
    seqs: list[int] = Field(description="store sequence numbers of the accepted events, in batch order")
    rejected: list[RejectedEvent] = []
    unknown_items: int = Field(0, description="events of this request whose item_id is not in the catalog: stored "
                                              "(setting unknown_item_events = \"accept\", the default) or listed "
                                              "in `rejected` with field 'item_id' (\"reject\")")
    replayed: int = Field(0, description="events of this batch already stored by an earlier request with the same "
                                         "Idempotency-Key (not stored again; not in `accepted`)")


def events_body_schema(max_batch: int) -> dict[str, Any]:
    """OpenAPI schema of POST /events: one event, a list of events, or {events, all_or_nothing}.

    The route reads the body itself (to keep good events of a partly bad batch), so FastAPI
    cannot derive this schema; it is declared here from the same model."""
    event = EventIn.model_json_schema()
    batch = {"type": "array", "items": event, "minItems": 1, "maxItems": max_batch}
    wrapped = {"type": "object", "additionalProperties": False, "required": ["events"],
               "properties": {"events": batch, "all_or_nothing": {"type": "boolean", "default": False}}}
    return {"required": True, "content": {"application/json": {"schema": {"anyOf": [event, batch, wrapped]}}}}


class BodyError(ValueError):
    """The events body as a whole is unusable (not JSON, wrong shape, too many events)."""

    def __init__(self, loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind

    def detail(self) -> list[dict[str, Any]]:
        """FastAPI's 422 `detail` shape, so clients parse one error format."""
        return [{"type": self.kind, "loc": ["body", *self.loc], "msg": self.msg}]


def unpack_events_body(body: Any, max_batch: int) -> tuple[list[Any], bool, bool]:
    """(raw events, is_batch, all_or_nothing from the body) of a decoded JSON body."""
    strict = False
    if isinstance(body, dict) and "events" in body:
        extra = set(body) - {"events", "all_or_nothing"}
        if extra:
            raise BodyError((sorted(extra)[0],), "extra field not permitted next to 'events'", "extra_forbidden")
        flag = body.get("all_or_nothing", False)
        if not isinstance(flag, bool):
            raise BodyError(("all_or_nothing",), "must be a boolean", "bool_type")
        strict, body = flag, body["events"]
        if not isinstance(body, list):
            raise BodyError(("events",), "must be a list of events", "list_type")
    if isinstance(body, dict):
        return [body], False, strict
    if not isinstance(body, list):
        raise BodyError((), "expected an event object, a list of events or {\"events\": [...]}", "model_type")
    if not body:
        raise BodyError(("events",), "the batch is empty", "too_short")
    if len(body) > max_batch:
        raise BodyError(("events",), f"at most {max_batch} events per request, got {len(body)}", "too_long")
    return body, True, strict


def _field_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "event"


def validate_events(raw: list[Any], now: float | None = None, max_future_seconds: float = MAX_FUTURE_SECONDS
                    ) -> tuple[list[tuple[int, EventRecord]], list[RejectedEvent]]:
    """Validate each event on its own: (index, record) of the good ones, and one
    `RejectedEvent` per problem of the bad ones (an event can fail on several fields).
    Event times more than `max_future_seconds` after `now` are refused."""
    now = time.time() if now is None else now
    ctx = {"now": now, "max_future_seconds": max_future_seconds}
    good: list[tuple[int, EventRecord]] = []
    bad: list[RejectedEvent] = []
    for i, item in enumerate(raw):
        try:
            good.append((i, EventIn.model_validate(item, context=ctx).to_record(now)))
        except ValidationError as e:
            for err in e.errors(include_url=False):
                bad.append(RejectedEvent(index=i, field=_field_of(err["loc"]), reason=err["msg"]))
    return good, bad


# ---- items and users ----------------------------------------------------------------------------
Category = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CATEGORY_LEN), AfterValidator(check_id_text),
                     Field(json_schema_extra={"pattern": ID_PATTERN})]


class ItemIn(_Strict):
    """An item's content; its id comes from the path (PUT /items/{item_id})."""

    title: Annotated[str, AfterValidator(_no_nul)] = Field("", max_length=MAX_TITLE_LEN,
                                                           json_schema_extra={"pattern": NO_NUL_PATTERN})
    text: Annotated[str, AfterValidator(_no_nul)] = Field("", max_length=MAX_TEXT_LEN,
                                                          description="description and other free text",
                                                          json_schema_extra={"pattern": NO_NUL_PATTERN})
    categories: list[Category] = Field(default_factory=list, max_length=MAX_CATEGORIES)
    attributes: Attributes = Field(default_factory=dict, max_length=MAX_ATTRIBUTES,
                                   description="brand, price, language, ... (finite numbers, no NUL characters, "
                                               f"at most {MAX_ATTRIBUTE_DEPTH} levels deep)")
    available: bool = True
    created_at: float | None = Field(None, ge=-1e11, le=1e11,
                                     description="when the item was created or released (epoch seconds; the "
                                                 "recency features read it), taken when the item is first stored; "
                                                 "default: that moment")

    def to_record(self, item_id: str, now: float) -> ItemRecord:
        return ItemRecord(item_id=item_id, title=self.title, text=self.text, categories=tuple(self.categories),
                          attributes=dict(self.attributes), available=self.available,
                          created_at=self.created_at or 0.0, updated_at=now)


class ItemWithId(ItemIn):
    item_id: Id


class ItemsBulkIn(_Strict):
    items: list[ItemWithId] = Field(min_length=1, description="an id given twice: the last one wins")


class ItemOut(BaseModel):
    item_id: str
    title: str
    text: str
    categories: list[str]
    attributes: dict[str, Any]
    available: bool
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, r: ItemRecord) -> "ItemOut":
        return cls(item_id=r.item_id, title=r.title, text=r.text, categories=list(r.categories),
                   attributes=dict(r.attributes), available=r.available, created_at=r.created_at,
                   updated_at=r.updated_at)


class ItemsUpserted(BaseModel):
    upserted: int


class Deleted(BaseModel):
    deleted: bool


class UserIn(_Strict):
    attributes: Attributes = Field(default_factory=dict, max_length=MAX_ATTRIBUTES,
                                   description="finite numbers, no NUL characters, "
                                               f"at most {MAX_ATTRIBUTE_DEPTH} levels deep")

    def to_record(self, user_id: str, now: float) -> UserRecord:
        return UserRecord(user_id=user_id, attributes=dict(self.attributes), updated_at=now)


class UserOut(BaseModel):
    user_id: str
    attributes: dict[str, Any]
    updated_at: float


class UserDeletedOut(BaseModel):
    """What DELETE /users/{user_id} removed."""

    user_id: str
    store: dict[str, int] = Field(description="rows deleted from the record store: events, record (attributes), "
                                              "rankings (logged rankings served to the user)")
    served: dict[str, Any] = Field(description="the served version in memory: events erased from the user's "
                                               "history, stages whose global counts no longer include them "
                                               "(recounted) and stages that keep them until the next training "
                                               "(kept)")


# ---- listings -----------------------------------------------------------------------------------
MAX_PAGE = 1000
#: item fields a client may ask inline (`?fields=title,categories`) in rankings and histories
ITEM_FIELDS = ("title", "text", "categories", "attributes", "available", "created_at", "updated_at")


class ItemsPage(BaseModel):
    """One page of the catalog in item_id order; pass `next` as `after` for the next page."""

    items: list[ItemOut]
    next: str | None = Field(description="the cursor of the next page (None on the last page)")
    total: int = Field(description="items in the catalog")


class UserListed(BaseModel):
    user_id: str
    attributes: dict[str, Any] = Field(default_factory=dict, description="from PUT /users/{id} ({} when none)")
    updated_at: float | None = Field(None, description="when the attributes were last set (None: never)")


class UsersPage(BaseModel):
    """One page of the users (with events or attributes) in user_id order; pass `next` as
    `after` for the next page."""

    users: list[UserListed]
    next: str | None = Field(description="the cursor of the next page (None on the last page)")


class ItemFieldsOut(BaseModel):
    """The item fields asked for with `?fields=` (only those are present)."""

    title: str | None = None
    text: str | None = None
    categories: list[str] | None = None
    attributes: dict[str, Any] | None = None
    available: bool | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @classmethod
    def of(cls, r: ItemRecord | None, fields: tuple[str, ...]) -> "ItemFieldsOut | None":
        """The `fields` of `r`; None when the item is no longer in the catalog."""
        if r is None:
            return None
        values = {"title": r.title, "text": r.text, "categories": list(r.categories), "attributes": dict(r.attributes),
                  "available": r.available, "created_at": r.created_at, "updated_at": r.updated_at}
        return cls(**{f: values[f] for f in fields})


class HistoryEventOut(BaseModel):
    seq: int = Field(description="the event's place in the store's log (the `before` cursor)")
    item_id: str
    kind: str
    value: float
    timestamp: float
    ranking_id: str | None = None
    item: ItemFieldsOut | None = Field(None, description="the item's fields asked with ?fields= (absent when not "
                                                         "asked; null when the item is no longer in the catalog)")


class HistoryOut(BaseModel):
    """A user's events, newest first; pass `next` as `before` for older ones."""

    user_id: str
    events: list[HistoryEventOut]
    total: int = Field(description="all of the user's stored events")
    next: int | None = Field(description="the cursor of the next (older) page (None on the last page)")


# ---- rankings -----------------------------------------------------------------------------------
class RankedItemOut(BaseModel):
    item_id: str
    score: float
    sources: list[str] = Field(description="recall channels that proposed the item")
    explanation: dict[str, Any] | None = None
    item: ItemFieldsOut | None = Field(None, description="the item's fields asked with ?fields= (absent when not "
                                                         "asked)")


class RankingOut(BaseModel):
    """A served list. Send `ranking_id` back with events about its items, so they join it."""

    ranking_id: str
    model_version: str
    items: list[RankedItemOut]
    timings_ms: dict[str, float] = {}


# ---- admin and probes ---------------------------------------------------------------------------
class ReloadIn(_Strict):
    version: Id | None = Field(None, description="a saved model version; the latest when omitted")


class TrainIn(_Strict):
    config: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        None, description="a pipeline config (a TOML file on the server, or the name of a shipped config such "
                          "as 'ml-100k' or 'serve-default'); the service's own when omitted")
    overrides: dict[str, JsonValue] | None = Field(None, description="merged into the config (channels and "
                                                                     "stages by name)")
    activate: bool = Field(True, description="serve the new version once it is fitted (hot swap)")
    wait: bool = Field(True, description="answer when the fit is done (false: 202 at once; progress in "
                                         "GET /admin/stats)")


class ModelVersionOut(BaseModel):
    model_version: str


class TrainOut(BaseModel):
    model_version: str | None = Field(description="the version trained (None while it trains in the background)")
    active: bool = Field(description="whether it is now being served")
    state: Literal["done", "started"] = "done"


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    detail: str | None = None
    model_version: str | None = None


class ErrorOut(BaseModel):
    """Error body of 401 / 403 / 404 / 413 / 429 / 503."""

    error: str
    detail: str


# ---- sessions and experiments -------------------------------------------------------------------
MAX_SESSION = 1000  # events in one session (lmrec.serving.sessions.MAX_SESSION)


class SessionEventIn(_Strict):
    """One event of a session; `timestamp`: every event has one or none has (the order counts)."""

    item_id: Id
    kind: EventKind = "view"
    value: float = Field(1.0, ge=-1e6, le=1e6, description="rating value, quantity, or 1")
    timestamp: float | None = Field(None, gt=0, le=MAX_TIMESTAMP, description="epoch seconds (UTC)")


class SessionIn(_Strict):
    """A history without a stored user (for a stored user: GET /recommend/{user_id})."""

    history: list[SessionEventIn] = Field(max_length=MAX_SESSION, description="the session's events, oldest first")
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")
    explain: bool = Field(False, description="include per-item explanations")

    @field_validator("k", mode="before")
    @classmethod
    def _whole(cls, v: Any) -> Any:
        # JSON Schema's "integer" includes 11.0; strict mode alone would refuse it
        return int(v) if isinstance(v, float) and v.is_integer() else v


class SessionRankingOut(RankingOut):
    unknown_items: list[str] = Field(description="history item ids the served version does not know (left out)")
    ignored_events: int = Field(description="history events of kinds the service does not learn from (left out)")


class ExperimentIn(_Strict):
    name: Id = Field(description="the experiment's name (part of the hash that assigns users)")
    a: Id = Field(description="variant A: a saved model version")
    b: Id = Field(description="variant B: another saved model version")
    split: float = Field(0.5, gt=0, lt=1, description="share of users in B")


class ExperimentOut(BaseModel):
    name: str
    a: str
    b: str
    split: float
    started_at: float
    start_seq: int
    stopped_at: float | None = None


# ---- FAQ answers (GET /faq, /admin/faq) ----------------------------------------------------------
MAX_FAQ_QUESTION_LEN = 512   # lmrec.faq.MAX_QUESTION_CHARS
MAX_FAQ_ANSWER_LEN = 10_000
MAX_FAQ_QUESTIONS = 50
MAX_FAQ_K = 20
#: FAQ texts: no NUL (no store keeps it) and not blank; checked with a readable reason, pattern in the schema
FAQ_TEXT_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"
NO_NUL_PATTERN = r"^[^\x00]*$"


def check_faq_text(value: str) -> str:
    _no_nul(value)
    if not value.strip():
        raise ValueError("is blank")
    return value


FaqText = Annotated[str, Field(min_length=1, max_length=MAX_FAQ_QUESTION_LEN,
                               json_schema_extra={"pattern": FAQ_TEXT_PATTERN}), AfterValidator(check_faq_text)]
_FaqShort = Annotated[str, Field(max_length=200, json_schema_extra={"pattern": NO_NUL_PATTERN}), AfterValidator(_no_nul)]


class FaqMatchOut(BaseModel):
    entry_id: str
    question: str = Field(description="the stored wording that matched best")
    answer: str
    intent: str | None = None
    score: float = Field(description="the final ranking score of the entry")


class FaqOut(BaseModel):
    """An answer, or `abstained: true` (hand over to a person) with no answer when the confidence is
    under the threshold."""

    query: str
    abstained: bool
    answer: str | None = Field(description="the stored answer (null when abstained or nothing is stored)")
    intent: str | None = Field(description="the intent of the best match (also given when abstained)")
    entry_id: str | None = None
    matched_question: str | None = Field(None, description="the stored wording that matched best")
    score: float | None = Field(description="the confidence compared with the threshold")
    threshold: float | None = Field(description="the abstain threshold (null: never abstains)")
    alternatives: list[FaqMatchOut] = []
    timings_ms: dict[str, float] = {}


class FaqEntryIn(_Strict):
    questions: list[FaqText] = Field(min_length=1, max_length=MAX_FAQ_QUESTIONS,
                                     description="the question wordings that lead to this answer")
    answer: Annotated[str, Field(min_length=1, max_length=MAX_FAQ_ANSWER_LEN,
                                 json_schema_extra={"pattern": FAQ_TEXT_PATTERN}), AfterValidator(check_faq_text)]
    intent: _FaqShort = ""
    language: _FaqShort = ""


class FaqEntryOut(BaseModel):
    entry_id: str
    questions: list[str]
    answer: str
    intent: str = ""
    language: str = ""


class FaqListOut(BaseModel):
    entries: list[FaqEntryOut]
    threshold: float | None
    total: int
