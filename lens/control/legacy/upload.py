"""The upload of the inspection log to the orchestrator (`POST /api/logs/sync`, SPEC §4b): each
stored log as an `.alog` file, one multipart `POST {django_url}/api/logs/upload` each."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from lens.control.legacy.logbook import LogBook

log = logging.getLogger("lens.control")


def upload_url(django_url: str) -> str:
    """`{django_url}/api/logs/upload`; ValueError for an empty or non-http(s) `django_url`."""
    base = (django_url or "").strip().rstrip("/")
    if not base:
        raise ValueError("django_url is not configured")
    try:
        parsed = httpx.URL(base)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"django_url must be an http:// or https:// URL, got {django_url!r}")
    return f"{base}/api/logs/upload"


async def sync(
    book: LogBook,
    django_url: str,
    machine_id: str,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 10.0,
    budget_s: float | None = None,
) -> dict[str, int]:
    """Upload the stored logs to the orchestrator, oldest first, one `POST
    {django_url}/api/logs/upload` each (multipart: field `machine_id`, file `file` named
    `alog_name()`, application/octet-stream, `timeout_s` each); a 2xx answer deletes the log, any
    other answer or error keeps it (counted failed). Returns `{uploaded, failed, remaining, before}`
    (`before`/`remaining`: stored logs before and after).

    Unlike the old machine: the buffer is flushed first and kept (the old sync discarded the
    entries not yet written); logs go oldest first (the old order was the directory's); when the
    orchestrator cannot be reached (connection refused or connect timeout) the logs not yet tried
    are counted failed without trying each; with `budget_s`, no upload starts after that many
    seconds (the orchestrator waits 60 s for the answer), the rest stays for the next sync,
    neither uploaded nor failed. Entries offered meanwhile are stored and stay for the next
    sync; concurrent syncs of one book run one after the other. ValueError for an empty or
    non-http(s) `django_url` or an empty `machine_id`; database errors are raised.
    """
    url = upload_url(django_url)
    if not machine_id:
        raise ValueError("machine_id is empty")
    started = time.monotonic()
    async with book.sync_lock():
        await asyncio.to_thread(book.flush)
        seqs = await asyncio.to_thread(book.stored_seqs)
        uploaded = failed = 0
        error: str | None = None
        http = client or httpx.AsyncClient(timeout=timeout_s)
        try:
            for i, seq in enumerate(seqs):
                if budget_s is not None and time.monotonic() - started >= budget_s:
                    break
                item = await asyncio.to_thread(book.load_alog, seq)
                if item is None:
                    continue
                log_id, name, data = item
                try:
                    r = await http.post(
                        url,
                        data={"machine_id": machine_id},
                        files={"file": (name, data, "application/octet-stream")},
                        timeout=timeout_s,
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                    error = f"log upload to {url}: orchestrator unreachable: {e!r}"
                    failed += len(seqs) - i
                    break
                except httpx.HTTPError as e:
                    error = f"log upload {name} to {url}: {e!r}"
                    failed += 1
                    continue
                if r.is_success:
                    await asyncio.to_thread(book.delete, [log_id])
                    uploaded += 1
                else:
                    error = f"log upload {name} to {url}: HTTP {r.status_code}"
                    failed += 1
        finally:
            if client is None:
                await http.aclose()
        if error is not None:
            log.warning("%s (%d failed, kept for the next sync)", error, failed)
        book.note_upload(uploaded, failed, error)
        return {"uploaded": uploaded, "failed": failed, "remaining": book.count(), "before": len(seqs)}
