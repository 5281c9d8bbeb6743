"""Tables of the studio's domain and their invariants: projects, members, keys, data, impulses, jobs,
trained models, deployments and uploaded (bring-your-own) models."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


# Higher rank may do everything a lower rank may. Ingestion keys rank below viewers: they may only
# send data (ingestion API, device websocket), never read the project through the JSON API.
ROLE_RANK = {"ingestion": 0, Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3, Role.OWNER: 4}


class KeyRole(models.TextChoices):
    INGESTION = "ingestion", "Ingestion only"
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    ADMIN = "admin", "Admin"


class Category(models.TextChoices):
    TRAINING = "training", "Training"
    TESTING = "testing", "Testing"
    ANOMALY = "anomaly", "Anomaly"


class SampleKind(models.TextChoices):
    TIME_SERIES = "time-series", "Time series"
    AUDIO = "audio", "Audio"
    IMAGE = "image", "Image"


class Project(models.Model):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    # What the user builds (wizard): motion, audio, images, model.
    kind = models.CharField(max_length=20, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Fernet token of the HMAC key devices sign data with (recoverable, never stored in clear).
    hmac_key_encrypted = models.TextField()
    require_signed = models.BooleanField(default=False)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="project_name_not_empty")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]


class ApiKey(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=KeyRole.choices)
    # The key is "ts_<prefix>_<secret>": the prefix finds the row, only a SHA-256 of the whole key is kept.
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class Activity(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="activities")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    verb = models.CharField(max_length=50)
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class Device(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="devices")
    device_id = models.CharField(max_length=128)
    name = models.CharField(max_length=128, blank=True, default="")
    device_type = models.CharField(max_length=128, blank=True, default="")
    sensors = models.JSONField(default=list)
    connection = models.CharField(max_length=32, blank=True, default="")
    last_seen = models.DateTimeField(null=True, blank=True)
    online = models.BooleanField(default=False)
    # Identifies the live websocket session (the newest connection wins).
    session_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # Continuous streaming (docs/device-protocol.md): what the stream carries, and the open recording.
    stream_interval_ms = models.FloatField(null=True, blank=True)
    stream_sensors = models.JSONField(default=list)
    recording = models.BooleanField(default=False)
    recording_label = models.CharField(max_length=128, blank=True, default="")
    recording_category = models.CharField(max_length=10, blank=True, default="training")
    recording_from_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "device_id"], name="unique_device_per_project")]
        ordering = ["device_id"]


class StreamChunk(models.Model):
    """One acknowledged stream frame of a device: `seq` and its values (float32, row-major [n, axes])."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="stream_chunks")
    seq = models.BigIntegerField()
    axes = models.PositiveSmallIntegerField()
    values = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "seq"], name="unique_stream_seq")]
        ordering = ["device", "seq"]


class Sample(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="samples")
    category = models.CharField(max_length=10, choices=Category.choices, db_index=True)
    label = models.CharField(max_length=128, blank=True, default="", db_index=True)
    file_name = models.CharField(max_length=255)
    kind = models.CharField(max_length=12, choices=SampleKind.choices)
    sensors = models.JSONField(default=list)  # [{"name": "accX", "units": "m/s2"}, ...]
    interval_ms = models.FloatField(null=True, blank=True)
    value_count = models.IntegerField(default=0)
    duration_ms = models.FloatField(default=0)
    width = models.IntegerField(null=True, blank=True)
    height = models.IntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="samples")
    device_name = models.CharField(max_length=128, blank=True, default="")
    device_type = models.CharField(max_length=128, blank=True, default="")
    uploader = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    upload_source = models.CharField(max_length=64, blank=True, default="")
    metadata = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    signed = models.BooleanField(default=False)
    payload_path = models.CharField(max_length=255)  # canonical format (workers/ml/samples.py)
    raw_path = models.CharField(max_length=255, blank=True, default="")  # the file as uploaded
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(value_count__gte=0), name="sample_value_count_non_negative"),
        ]


class Impulse(models.Model):
    """One version of a project's impulse (input block, processing blocks, learning blocks) as JSON."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="impulses")
    version = models.PositiveIntegerField()
    spec = models.JSONField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="unique_impulse_version")]
        ordering = ["-version"]


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINAL_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=32)  # features, train, test, optimize, deploy, profile
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0)
    message = models.CharField(max_length=500, blank=True, default="")
    log = models.TextField(blank=True, default="")
    params = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    error = models.TextField(blank=True, default="")
    impulse = models.ForeignKey(Impulse, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    snapshot = models.JSONField(default=list)  # [[sample_id, sha256], ...] the data set the job used
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_0_1"),
        ]


class FeatureSet(models.Model):
    """Cached features of one sample under one processing block (key: block, version, params, sample hash)."""

    cache_key = models.CharField(max_length=64, unique=True)
    block = models.CharField(max_length=32)
    implementation_version = models.IntegerField()
    sample_sha256 = models.CharField(max_length=64)
    path = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)


class TrainedModel(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="trained_models")
    job = models.ForeignKey(Job, null=True, on_delete=models.SET_NULL, related_name="trained_models")
    impulse = models.ForeignKey(Impulse, null=True, on_delete=models.SET_NULL, related_name="trained_models")
    learn_block = models.CharField(max_length=64, default="")
    snapshot = models.JSONField(default=list)
    settings = models.JSONField(default=dict)
    labels = models.JSONField(default=list)
    keras_path = models.CharField(max_length=255, blank=True, default="")
    anomaly = models.JSONField(null=True, blank=True)  # k-means model when the impulse has an anomaly block
    metrics = models.JSONField(default=dict)
    history = models.JSONField(default=dict)
    misclassified = models.JSONField(default=list)
    # float32 / int8 / pruned / pruned-int8: {variant: {accuracy, size, arena, flash, latency...}, files}
    variants = models.JSONField(default=dict)
    test_results = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class DeploymentTarget(models.TextChoices):
    TFLITE_FLOAT = "tflite-float", "TensorFlow Lite (float32)"
    TFLITE_INT8 = "tflite-int8", "TensorFlow Lite (int8)"
    ONNX_FLOAT = "onnx-float", "ONNX (float32)"
    ONNX_INT8 = "onnx-int8", "ONNX (int8)"
    ARDUINO = "arduino", "Arduino library"
    CPP = "cpp", "C++ library"


class Deployment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    model = models.ForeignKey(TrainedModel, on_delete=models.CASCADE, related_name="deployments")
    target = models.CharField(max_length=16, choices=DeploymentTarget.choices)
    job = models.ForeignKey(Job, null=True, on_delete=models.SET_NULL, related_name="deployments")
    path = models.CharField(max_length=255, blank=True, default="")
    file_name = models.CharField(max_length=255, blank=True, default="")
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    report = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class UploadedModel(models.Model):
    """A model the user brings (.tflite, .onnx, .keras) to inspect and profile."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="uploaded_models")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=10)  # tflite, onnx, keras
    path = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    test_set_path = models.CharField(max_length=255, blank=True, default="")
    # sample inputs: an .npz with one array per input name, first axis = feeds
    inputs_path = models.CharField(max_length=255, blank=True, default="")
    report = models.JSONField(default=dict)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
