"""The Edge Impulse-compatible ingestion API: POST /api/<category>/data and /api/<category>/files.

Devices and scripts written for Edge Impulse work by changing only the host. What they send
(edge-impulse-cli, ingestion-sdk-c, the `edgeimpulse` Python SDK):

- ``x-api-key`` (required; any live key of the project, ingestion role or higher), ``x-label``
  (else the label is the file name's text before the first dot), ``x-no-label``, ``x-file-name``,
  ``x-disallow-duplicates``, ``x-add-date-id``, ``x-metadata`` (JSON object of strings),
  ``x-upload-source``.
- ``/data``: one sample as the body; answers ``text/plain`` with the stored file name (200) or
  the problem (4xx).
- ``/files``: multipart, field ``data`` repeated (up to 1000 files); answers JSON
  ``{"success": true, "files": [{"success": true, "sampleId", "projectId", "fileName"} |
  {"success": false, "fileName", "error"}]}``. When every file failed the status is that of the
  first failure (400/409/413/415) so plain HTTP clients see the failure too.

401 for a missing, invalid or revoked key; 429 over STUDIO_INGEST_RATE_PER_MINUTE requests per key.
"""
from __future__ import annotations

import html
import logging
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .ingestion import IngestionError, parse_metadata_header
from .models import ApiKey
from .services import Actor, ApiKeyError, ServiceError, api_key_authenticate
from .services_samples import UPLOAD_CATEGORIES, UploadOptions, samples_uploaded_log, upload_ingest

log = logging.getLogger(__name__)

DATA_CATEGORIES = ("training", "testing", "anomaly")
_TRUE = {"1", "true", "yes", "on"}


class RequestProblem(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _flag(request, name: str) -> bool:
    return request.headers.get(name, "").strip().lower() in _TRUE


def header_text(request, name: str) -> str | None:
    """A header as text: servers hand headers over decoded as Latin-1, clients send labels and
    file names as UTF-8 ("münze.json"), so re-read them as UTF-8 when they are valid UTF-8."""
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _authenticate(request) -> ApiKey:
    try:
        return api_key_authenticate(request.headers.get("x-api-key"))
    except ApiKeyError as exc:
        raise RequestProblem(exc.message, 401) from exc


def rate_limit_check(key: ApiKey) -> None:
    """At most STUDIO_INGEST_RATE_PER_MINUTE requests per key per clock minute (a Redis counter;
    when Redis cannot be reached ingestion goes on rather than failing)."""
    limit = getattr(settings, "STUDIO_INGEST_RATE_PER_MINUTE", 0)
    if not limit:
        return
    minute = int(time.time() // 60)
    name = f"ingest-rate:{key.prefix}:{minute}"
    try:
        client = _redis()
        pipe = client.pipeline()
        pipe.incr(name)
        pipe.expire(name, 120)
        count = pipe.execute()[0]
    except Exception:  # a broken counter must not stop data collection
        log.warning("ingestion rate counter unavailable", exc_info=True)
        return
    if count > limit:
        raise RequestProblem(
            f"rate limit: this API key sent more than {limit} requests this minute; "
            f"retry in {60 - int(time.time()) % 60} s", 429)


_redis_client = None


def _redis():
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    return _redis_client


def upload_options(request, category: str) -> UploadOptions:
    """The EI headers of a request as UploadOptions (raises IngestionError on a bad header)."""
    label = header_text(request, "x-label")
    return UploadOptions(
        category=category,
        label=label if label not in (None, "") else None,
        no_label=_flag(request, "x-no-label"),
        disallow_duplicates=_flag(request, "x-disallow-duplicates"),
        add_date_id=_flag(request, "x-add-date-id"),
        metadata=parse_metadata_header(header_text(request, "x-metadata")),
        upload_source=request.headers.get("x-upload-source", "")[:64],
    )


def _text(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@csrf_exempt
@require_POST
def ingest_data(request, category: str):
    """One sample in the body (EI JSON/CBOR, CSV, WAV, JPEG, PNG)."""
    try:
        if category not in DATA_CATEGORIES:
            raise RequestProblem(f"unknown category '{category}'; use training, testing or anomaly", 404)
        key = _authenticate(request)
        rate_limit_check(key)
        options = upload_options(request, category)
        limit = settings.STUDIO_MAX_SAMPLE_BYTES
        declared = _content_length(request)
        if declared > limit:
            raise RequestProblem(f"body is {declared} bytes, over the limit of {limit}", 413)
        sample = upload_ingest(project=key.project, actor=Actor(api_key=key), data=request.body,
                               file_name=header_text(request, "x-file-name") or None,
                               content_type=request.content_type, options=options)
    except RequestProblem as exc:
        return _text(exc.message, exc.status)
    except (IngestionError, ServiceError) as exc:
        return _text(exc.message, exc.status)
    return _text(sample.file_name, 200)


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class _RawNameParser(MultiPartParser):
    """Django's parser, but keeping each part's file name exactly as sent.

    Django strips directories and unprintable characters from file names, which would turn
    ``../../etc/passwd`` into an innocent ``passwd``; the ingestion API rejects such names instead
    (with `safe_file_name`). Each part gets a placeholder name that indexes the raw one.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.raw_names: list[str] = []

    def sanitize_file_name(self, file_name):
        self.raw_names.append(html.unescape(file_name))
        return f"part{len(self.raw_names) - 1}"


def parse_files(request) -> list[tuple[str, object]]:
    """The ``data`` parts of a multipart request as (file name as sent, UploadedFile)."""
    if not request.content_type.startswith("multipart/form-data"):
        raise RequestProblem(
            f"the files endpoint takes multipart/form-data (field 'data'), not '{request.content_type or 'none'}'",
            415)
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    declared = _content_length(request)
    if declared > limit:
        raise RequestProblem(f"body is {declared} bytes, over the limit of {limit}", 413)
    parser = _RawNameParser(request.META, request, request.upload_handlers, request.encoding)
    try:
        _, files = parser.parse()
    except MultiPartParserError as exc:
        raise RequestProblem(f"malformed multipart body: {exc}") from exc
    except Exception as exc:  # TooManyFilesSent, RequestDataTooBig
        name = type(exc).__name__
        if name == "TooManyFilesSent":
            raise RequestProblem(f"too many files; at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} per request",
                                 413) from exc
        if name == "RequestDataTooBig":
            raise RequestProblem("request body is over the size limit", 413) from exc
        raise
    parts = files.getlist("data")
    if not parts:
        raise RequestProblem("no files: send them as multipart field 'data'")
    out = []
    for part in parts:
        index = int(part.name[4:]) if part.name.startswith("part") and part.name[4:].isdigit() else -1
        raw = parser.raw_names[index] if 0 <= index < len(parser.raw_names) else part.name
        # The EI SDK sends multi-label annotations as an extra "structured_labels.labels" part;
        # they have no place in a single-label sample, so they are left out (not failed).
        if raw.endswith(".labels"):
            part.close()
            continue
        out.append((raw, part))
    if not out:
        raise RequestProblem("no sample files: only .labels annotation files were sent")
    return out


def ingest_parts(*, project, actor: Actor, parts, options: UploadOptions, file_name_override: str | None = None):
    """Store each uploaded part as a sample; one activity entry for the batch.

    Returns (HTTP status, JSON body) in the EI files-endpoint shape.
    """
    results, created, first_failure = [], [], None
    limit = settings.STUDIO_MAX_SAMPLE_BYTES
    for raw_name, part in parts:
        name = file_name_override or raw_name
        try:
            if part.size > limit:
                raise IngestionError(f"file is {part.size} bytes, over the limit of {limit}", status=413)
            data = part.read()
            sample = upload_ingest(project=project, actor=actor, data=data, file_name=name,
                                   content_type=part.content_type, options=options, log_activity=False)
        except (IngestionError, ServiceError) as exc:
            first_failure = first_failure or exc.status
            results.append({"success": False, "fileName": str(name)[:255], "error": exc.message})
            continue
        finally:
            part.close()
        created.append(sample)
        results.append({"success": True, "sampleId": sample.id, "projectId": project.id,
                        "fileName": sample.file_name, "category": sample.category, "label": sample.label})
    samples_uploaded_log(project=project, actor=actor, samples=created, failed=len(results) - len(created),
                         source=options.upload_source)
    if not created and first_failure:
        first_error = next(r["error"] for r in results if not r["success"])
        return first_failure, {"success": False, "error": first_error, "files": results}
    return 200, {"success": True, "files": results}


@csrf_exempt
@require_POST
def ingest_files(request, category: str):
    """Multipart upload, field ``data`` repeatable; ``split`` assigns 80/20 by content hash."""
    try:
        if category not in UPLOAD_CATEGORIES:
            raise RequestProblem(f"unknown category '{category}'; use training, testing, anomaly or split", 404)
        key = _authenticate(request)
        rate_limit_check(key)
        options = upload_options(request, category)
        parts = parse_files(request)
    except RequestProblem as exc:
        return JsonResponse({"success": False, "error": exc.message}, status=exc.status)
    except IngestionError as exc:
        return JsonResponse({"success": False, "error": exc.message}, status=exc.status)
    status, body = ingest_parts(project=key.project, actor=Actor(api_key=key), parts=parts, options=options)
    return JsonResponse(body, status=status)
