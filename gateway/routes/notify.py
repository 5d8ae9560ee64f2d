"""notify's routes (issue #12): preferences, inbox read receipts, echoes and human steps, the proof's reports.

The inbox itself (``GET /api/v1/me/inbox``) stays with the ticket routes. Bodies are validated by
notify with the contract's schemas (``kernel.contracts.PreferencesSchema``, ``TaskDoneSchema``).
"""

from __future__ import annotations

from gateway.http import MAX_BODY_BYTES, PayloadTooLarge, endpoint, json_body, paging, query
from kernel.errors import ValidationFailed
from kernel.web import http


class NotifyRoutes:
    """Needs ``caller`` and ``notify`` (see GatewayService)."""

    @http("GET", "/api/v1/me/preferences")
    @endpoint
    def get_my_preferences(self, request):
        """The caller's channels in order, quiet hours, digest (the defaults until set)."""
        caller = self.caller(request, "preferences.read")
        return 200, self.notify.get_preferences(caller.community, caller.subject)

    @http("PUT", "/api/v1/me/preferences")
    @endpoint
    def put_my_preferences(self, request):
        """Replace the caller's preferences; critical tickets bypass quiet hours and digests regardless."""
        caller = self.caller(request, "preferences.write")
        return 200, self.notify.put_preferences(caller.community, caller.subject, json_body(request), caller.role)

    @http("POST", "/api/v1/me/inbox/<string:message_id>/read")
    @endpoint
    def read_my_message(self, request, message_id):
        """The read receipt of one inbox message (the ticket's timeline shows ``echo.read``); 404 if not theirs."""
        caller = self.caller(request, "inbox.read")
        return 200, self.notify.mark_read(caller.community, caller.subject, message_id)

    @http("GET", "/api/v1/echoes")
    @endpoint
    def list_echoes(self, request):
        """Every echo of one ticket (``?ticket_id=``) with each step of its plan."""
        caller = self.caller(request, "echoes.read")
        ticket_id = query(request, "ticket_id")
        if not ticket_id:
            raise ValidationFailed("ticket_id is required", {"ticket_id": ["Missing data for required field."]})
        return 200, self.notify.echoes_of_ticket(caller.community, ticket_id)

    @http("GET", "/api/v1/echo-tasks")
    @endpoint
    def list_echo_tasks(self, request):
        """Human steps to do (``?status=open`` by default, or ``done``): phone or visit a resident."""
        caller = self.caller(request, "echo_tasks.read")
        cursor, limit = paging(request)
        return 200, self.notify.list_tasks(caller.community, caller.viewer(), query(request, "status") or "open",
                                           cursor=cursor, limit=limit)

    @http("POST", "/api/v1/echo-tasks/<string:task_id>/done")
    @endpoint
    def complete_echo_task(self, request, task_id):
        """The worker phoned or visited the resident: the echo is delivered."""
        caller = self.caller(request, "echo_tasks.complete")
        body = json_body(request) if request.content_length else {}  # a note is optional
        return 200, self.notify.complete_task(caller.community, task_id, caller.viewer(), body)

    @http("GET", "/api/v1/reports/silent")
    @endpoint
    def silent_tickets(self, request):
        """Tickets with a change whose echo was neither delivered nor accounted for in time."""
        caller = self.caller(request, "reports.echoes")
        return 200, self.notify.silent_report(caller.community)

    @http("GET", "/api/v1/reports/echo-latency")
    @endpoint
    def echo_latency(self, request):
        """p50/p95 seconds from a ticket change to sent, delivered and read, by channel (the last week)."""
        caller = self.caller(request, "reports.echoes")
        return 200, self.notify.echo_latency(caller.community)

    @http("POST", "/api/v1/broadcasts")
    @endpoint
    def create_broadcast(self, request):
        """A notice to a segment of the community (``kernel.contracts.BroadcastSchema``), fanned out in batches."""
        caller = self.caller(request, "broadcasts.create")
        return 201, self.notify.create_broadcast(caller.community, json_body(request), caller.subject)

    @http("GET", "/api/v1/broadcasts")
    @endpoint
    def list_broadcasts(self, request):
        """The community's broadcasts, newest first, each with its progress."""
        caller = self.caller(request, "broadcasts.read")
        cursor, limit = paging(request)
        return 200, self.notify.list_broadcasts(caller.community, cursor=cursor, limit=limit)

    @http("GET", "/api/v1/broadcasts/<string:broadcast_id>")
    @endpoint
    def get_broadcast(self, request, broadcast_id):
        """A broadcast's progress: targeted, delivered, read, failed."""
        caller = self.caller(request, "broadcasts.read")
        return 200, self.notify.get_broadcast(caller.community, broadcast_id)

    @http("POST", "/api/v1/me/checkins")
    @endpoint
    def answer_my_checkin(self, request):
        """The caller's answer to today's health check-in (``{"status": "well"|"unwell", "temperature", "note"}``)."""
        caller = self.caller(request, "checkins.answer")
        return 200, self.notify.answer_checkin(caller.community, caller.subject, json_body(request))

    @http("GET", "/api/v1/checkins")
    @endpoint
    def list_checkins(self, request):
        """The day's check-in (``?date=YYYY-MM-DD``, today by default): who answered, who did not."""
        caller = self.caller(request, "checkins.read")
        return 200, self.notify.list_checkins(caller.community, caller.viewer(), query(request, "date"))

    @http("PUT", "/api/v1/checkins/schedule")
    @endpoint
    def put_checkin_schedule(self, request):
        """The local hour (``{"at": "09:00"}``) of the daily check-in of residents in home quarantine; null: none."""
        caller = self.caller(request, "checkins.schedule")
        return 200, self.notify.set_checkin_schedule(caller.community, json_body(request))

    @http("POST", "/api/v1/receipts/sms")
    @endpoint
    def sms_receipts(self, request):
        """The SMS provider's delivery receipts (Aliyun SmsReport, a JSON array), signed with SMS_RECEIPT_SECRET.

        No bearer token: the provider signs the push instead (``X-Huisheng-Timestamp``, ``X-Huisheng-Signature``).
        """
        self.limits.check("address", self.client_address(request))
        too_large = PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes",
                                    {"body": [f"max {MAX_BODY_BYTES}"]})
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise too_large
        raw = request.stream.read(MAX_BODY_BYTES + 1)  # the signature covers the exact bytes sent
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
        headers = request.headers
        return 200, self.notify.sms_receipts(raw.decode("utf-8", "replace"), headers.get("X-Huisheng-Timestamp"),
                                             headers.get("X-Huisheng-Signature"))
