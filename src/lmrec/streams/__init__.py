"""Event streams: feed the engine from a durable stream instead of (or beside) POST /events.

A stream is chosen by URL, as stores are:

- `nats://host:4222/SUBJECT[?stream=NAME&durable=NAME&ack_wait=30]`: NATS JetStream (primary);
  a durable pull consumer, explicit acks. Needs `pip install 'lmrec[stream]'` (nats-py).
- `redis://host:6379/0?stream=KEY[&group=NAME&consumer=NAME&claim_idle_ms=30000]`: Redis Streams
  with a consumer group.

Delivery is at least once, ingest is idempotent: every message carries an `event_id` (or gets
one from its position in the stream), the store commits an id once (`append_events_once`), and
a message is acknowledged only after its commit. A consumer killed between the commit and the
ack gets the message again and skips it. Malformed messages go to a dead-letter subject/stream
(`<subject>.dlq`, `<key>.dlq`) with their reason and never block the consumer; an unreachable
broker is logged with its reason and retried with exponential back-off.

    consumer = StreamConsumer("nats://127.0.0.1:4222/lmrec.events", engine.ingest)
    consumer.start()            # a background thread
    ...
    consumer.stop()
"""

from lmrec.streams.base import BadMessage, BrokerUnavailable, StreamURL, parse_stream_url
from lmrec.streams.consumer import StreamConsumer, open_broker
from lmrec.streams.messages import decode_event, encode_event
from lmrec.streams.publish import publish_events, read_event_file

__all__ = ["StreamConsumer", "open_broker", "parse_stream_url", "StreamURL", "BadMessage", "BrokerUnavailable",
           "decode_event", "encode_event", "publish_events", "read_event_file"]
