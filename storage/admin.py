"""The admin site: each bot's owners and collaborators see only their bots."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import URLPattern, path, reverse

from adapters.facebook.pages import (
    PageTokenError,
    check_page_token,
    sealed_token_fields,
)
from botcore.botfile import BotFileError, dump_bot_file, parse_bot_file
from storage.human_replies import (
    MAX_HUMAN_REPLY_LENGTH,
    HumanReplyError,
    queue_human_reply,
)
from storage.models import Bot, Contact, Conversation, FacebookPage, Membership, Message

PAGE_ID = re.compile(r"^[0-9]{1,64}$")
NOT_CHECKED_WARNING = (
    "FACEBOOK_APP_SECRET is not set, so the page's token was NOT checked with "
    "the Graph API and the page was not subscribed to the webhook's events. "
    "The webhook answers 503 until the secret is set; then enter the token "
    "again."
)
# What a bot's owners may change themselves; the rest comes from the bot
# file, through importbot.
OWNER_EDITABLE_BOT_FIELDS = ("human_agent_tag", "human_hold_seconds")


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


def owns(request: HttpRequest, bot: Bot) -> bool:
    return Membership.objects.filter(
        bot=bot, user_id=request.user.pk or 0, role=Membership.Role.OWNER
    ).exists()


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


# The bot's fields that make up its bot file; "web" holds allowed_origins.
BOT_FILE_FIELDS = (
    "slug", "name", "language", "greeting", "fallback", "dialogues",
    "allowed_origins",
)
# Lists a bot file may leave empty, which a required form field would refuse.
BOT_FILE_LISTS = ("greeting", "fallback", "dialogues", "allowed_origins")
BOT_FIELD_OF_SECTION = {"web": "allowed_origins"}


class BotForm(forms.ModelForm):
    """A bot, held to the rules importbot holds its bot file to."""

    class Meta:
        model = Bot
        fields = [*BOT_FILE_FIELDS, *OWNER_EDITABLE_BOT_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in BOT_FILE_LISTS:
            if name in self.fields:
                self.fields[name].required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        editable = [name for name in BOT_FILE_FIELDS if name in self.fields]
        if not editable or any(name in self.errors for name in editable):
            return data
        values = {
            name: data[name] if name in editable else getattr(self.instance, name)
            for name in BOT_FILE_FIELDS
        }
        try:
            definition = parse_bot_file(bot_file_of(values))
        except BotFileError as error:
            self.add_error(self.field_of(error.field), str(error))
            return data
        # Stored as importbot stores it, so that exportbot gives it back.
        canonical = bot_fields_of(dump_bot_file(definition))
        data.update({name: canonical[name] for name in editable})
        return data

    def field_of(self, path: str) -> str | None:
        """Return the form field a bot file path points into, if shown."""
        section = re.split(r"[.\[]", path, maxsplit=1)[0]
        name = BOT_FIELD_OF_SECTION.get(section, section)
        return name if name in self.fields else None


def bot_file_of(values: dict[str, Any]) -> dict[str, Any]:
    bot_file = {name: values[name] for name in BOT_FILE_FIELDS[:-1]}
    return {**bot_file, "web": {"allowed_origins": values["allowed_origins"]}}


def bot_fields_of(bot_file: dict[str, Any]) -> dict[str, Any]:
    fields = {name: bot_file[name] for name in BOT_FILE_FIELDS[:-1]}
    return {**fields, "allowed_origins": bot_file["web"]["allowed_origins"]}


@admin.register(Bot)
class BotAdmin(MemberScopedAdmin):
    """Superusers change everything; a bot's owners its Messenger options."""

    form = BotForm
    bot_path = "pk"
    list_display = ["name", "slug", "language", "updated_at"]
    readonly_fields = ["web_key", "created_at", "updated_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return member_bots(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return True
        if not self.has_module_permission(request):
            return False
        return obj is not None and owns(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if request.user.is_superuser:
            return self.readonly_fields
        return [
            field.name
            for field in Bot._meta.concrete_fields
            if not field.primary_key and field.name not in OWNER_EDITABLE_BOT_FIELDS
        ]


class FacebookPageForm(forms.ModelForm):
    """A page's id and bot, and its access token, which is stored sealed.

    The token is never shown again; a new one replaces it. Graph checks
    that the token is the page's and subscribes the page, as
    connectfacebook does; while FACEBOOK_APP_SECRET is unset (Graph calls
    need it), the token is stored unchecked and the admin says so.
    """

    token_unchecked = False

    access_token = forms.CharField(
        label="Page access token",
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=True,
        help_text="Leave empty to keep the stored token.",
    )

    class Meta:
        model = FacebookPage
        fields = ["bot", "page_id"]

    def clean_page_id(self) -> str:
        page_id = str(self.cleaned_data["page_id"]).strip()
        if not PAGE_ID.match(page_id):
            raise forms.ValidationError("The page's numeric id.")
        return page_id

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        token = data.get("access_token")
        page_id = data.get("page_id") or self.instance.page_id
        if not token:
            if self.instance.pk is None:
                self.add_error("access_token", "A new page needs its token.")
            return data
        if page_id and not settings.FACEBOOK_APP_SECRET:
            self.token_unchecked = True
        elif page_id:
            try:
                check_page_token(token, page_id)
            except PageTokenError as error:
                self.add_error("access_token", str(error))
        return data

    def save(self, commit: bool = True) -> FacebookPage:
        page: FacebookPage = super().save(commit=False)
        token = self.cleaned_data.get("access_token")
        if token:
            for name, value in sealed_token_fields(page.page_id, token).items():
                setattr(page, name, value)
        if commit:
            page.save()
        return page


@admin.register(FacebookPage)
class FacebookPageAdmin(MemberScopedAdmin):
    """Pages are added and their tokens replaced here or by connectfacebook.

    The page id is fixed once the page exists: the sealed token is bound
    to it.
    """

    form = FacebookPageForm
    list_display = ["page_id", "bot", "token_hint", "token_invalid_since"]
    readonly_fields = [
        "token_hint", "token_invalid_since", "token_error", "throttled_until",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return self.readonly_fields
        return ["page_id", *self.readonly_fields]

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "token_unchecked", False):
            self.message_user(request, NOT_CHECKED_WARNING, level=messages.WARNING)


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
    """The history of a conversation, and a form to answer as a person."""

    list_display = ["pk", "bot", "channel", "created_at", "last_inbound_at"]
    list_filter = ["channel"]
    inlines = [MessageInline]
    readonly_fields = ["bot", "channel", "contact", "created_at", "last_inbound_at"]
    exclude = ["claimed_until", "claimed_by"]

    def get_urls(self) -> list[URLPattern]:
        reply = path(
            "<path:object_id>/reply/",
            self.admin_site.admin_view(self.human_reply_view),
            name="storage_conversation_reply",
        )
        return [reply, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        conversation = self.get_object(request, unquote(object_id))
        if conversation is not None and may_reply(request, conversation):
            context["human_reply_url"] = reverse(
                "admin:storage_conversation_reply", args=[quote(conversation.pk)]
            )
            context["human_reply_max"] = MAX_HUMAN_REPLY_LENGTH
        return super().change_view(request, object_id, form_url, context)

    def human_reply_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Queue the reply a member of the bot wrote, then show the history."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conversation = self.get_object(request, unquote(object_id))
        if conversation is None or not may_reply(request, conversation):
            raise PermissionDenied
        try:
            queue_human_reply(conversation.pk, request.POST.get("text", ""))
        except HumanReplyError as error:
            self.message_user(request, str(error), level=messages.ERROR)
        else:
            self.message_user(
                request, "Your reply is queued for delivery; its state shows "
                "in the history. The bot holds back in this conversation.",
                level=messages.SUCCESS,
            )
        return redirect(
            "admin:storage_conversation_change", quote(conversation.pk)
        )


def may_reply(request: HttpRequest, conversation: Conversation) -> bool:
    """Superusers and the bot's owners and collaborators answer as people."""
    user = request.user
    if user.is_superuser:
        return True
    return Membership.objects.filter(
        bot_id=conversation.bot_id, user_id=user.pk or 0
    ).exists()
