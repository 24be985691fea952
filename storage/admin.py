"""The admin site: each bot's owners and collaborators see only their bots."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from storage.models import Bot, Contact, Conversation, FacebookPage, Membership, Message


def member_bots(request: HttpRequest) -> QuerySet[Bot]:
    user = request.user
    if user.is_superuser:
        return Bot.objects.all()
    return Bot.objects.filter(memberships__user_id=user.pk or 0)


class MemberScopedAdmin(admin.ModelAdmin):
    """Read access for members of a bot; writes for superusers only."""

    bot_path = "bot"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.bot_path}__in": member_bots(request)})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Bot)
class BotAdmin(MemberScopedAdmin):
    bot_path = "pk"
    list_display = ["name", "slug", "language", "updated_at"]
    readonly_fields = ["web_key", "created_at", "updated_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return member_bots(request)


@admin.register(FacebookPage)
class FacebookPageAdmin(MemberScopedAdmin):
    list_display = ["page_id", "bot", "token_hint", "token_invalid_since"]
    exclude = ["access_token_encrypted"]
    readonly_fields = ["token_hint", "token_invalid_since", "token_error"]


@admin.register(Contact)
class ContactAdmin(MemberScopedAdmin):
    list_display = ["__str__", "bot", "channel", "profile_fetched_at"]


class MessageInline(admin.TabularInline):
    """The history of a conversation, read-only."""

    model = Message
    extra = 0
    can_delete = False
    fields = ["created_at", "author", "said", "state", "last_error"]
    readonly_fields = ["created_at", "author", "said", "state", "last_error"]

    @admin.display(description="message")
    def said(self, message: Message) -> str:
        content = message.content
        text = content.get("text") or content.get("payload") or ""
        if content.get("attachments"):
            kinds = ", ".join(a["kind"] for a in content["attachments"])
            text = f"{text} [{kinds}]".strip()
        return str(text)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(MemberScopedAdmin):
    list_display = ["pk", "bot", "channel", "created_at", "last_inbound_at"]
    list_filter = ["channel"]
    inlines = [MessageInline]
    readonly_fields = ["bot", "channel", "contact", "created_at", "last_inbound_at"]
    exclude = ["claimed_until", "claimed_by"]
