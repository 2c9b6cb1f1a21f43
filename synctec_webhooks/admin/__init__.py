"""The admin service: JSON API under /api/v1, the settings page at /, endpoint health."""

from synctec_webhooks.admin.service import AdminService, check_token

__all__ = ["AdminService", "check_token"]
