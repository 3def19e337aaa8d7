"""Log records leave the event loop through a queue: a handler writing to a terminal, pipe or file
makes a system call per record, which gives up the GIL, and under load the event loop then waits
to get it back. Here the loop only enqueues the record; a listener thread formats and writes it."""

from __future__ import annotations

import logging
import queue
from logging.handlers import QueueHandler, QueueListener


class _RecordQueueHandler(QueueHandler):
    """Enqueues the record as it is: uvicorn's access formatter needs the record's original args."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def log_through_queues(logger_names: tuple[str, ...]) -> list[QueueListener]:
    """Replace the handlers of each named logger by a queue whose listener thread runs them; stop
    the returned listeners at shutdown (that flushes what is queued)."""
    listeners = []
    for name in logger_names:
        logger = logging.getLogger(name)
        handlers = list(logger.handlers)
        if not handlers:
            continue
        records: queue.SimpleQueue = queue.SimpleQueue()
        for handler in handlers:
            logger.removeHandler(handler)
        logger.addHandler(_RecordQueueHandler(records))
        listener = QueueListener(records, *handlers, respect_handler_level=True)
        listener.start()
        listeners.append(listener)
    return listeners
