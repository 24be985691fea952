"""End to end in headless Chromium, with real pusher-js, under a strict CSP.

The host page is the demo page, served by `manage.py demopage` from another
origin than the gateway. The chat runs once against the gateway's own
Pusher server and once with PUSHER_URL pointing at a second gateway that
plays Pusher's cloud.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import Browser, Page, sync_playwright

from storage.bots import import_bot
from storage.models import Bot, Conversation, Message
from tests.conftest import (
    PYTHON,
    REPO,
    GatewayProcess,
    free_port,
    process_env,
    wait_for_http,
)
from tests.web.proxy import relay

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
VISITOR_ADDRESS = "127.0.0.2"
USER_AGENT = "GatewayPrivacyProbe/7.3 (visitor-ua-3f9c1e)"
WATCH_FOR_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""
REPLY_TIMEOUT = 20_000


@pytest.fixture
def browser(transactional_db: None) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> GatewayProcess:
        log = tmp_path / f"process-{len(started)}.log"
        process = GatewayProcess(args, process_env(env), log).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


class Tab:
    """The browser tab on the demo page, and what it reported."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self.console)
        page.on("pageerror", lambda error: self.problems.append(f"error: {error}"))
        page.add_init_script(WATCH_FOR_VIOLATIONS)

    def console(self, message: Any) -> None:
        if message.type in {"error", "warning"}:
            self.problems.append(f"console {message.type}: {message.text}")

    def bot_says(self, text: str) -> None:
        self.page.locator(".gwc-from-bot", has_text=text).first.wait_for(
            timeout=REPLY_TIMEOUT
        )

    def log_text(self) -> str:
        return self.page.inner_text(".gwc-log")

    def assert_clean(self) -> None:
        violations = self.page.evaluate("window.__violations")
        assert violations == []
        assert self.problems == []


def off_the_loop(function: Callable[..., Any], *args: Any) -> Any:
    """Run database code in a thread: Playwright runs a loop in this one."""

    def run() -> Any:
        try:
            return function(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as executor:
        return executor.submit(run).result()


def demo_bot(origin: str, *dialogues: dict[str, Any]) -> Bot:
    return off_the_loop(_import_demo_bot, origin, dialogues)


def _import_demo_bot(origin: str, dialogues: tuple[dict[str, Any], ...]) -> Bot:
    bot_file = json.loads((REPO / "bots" / "demo.json").read_text())
    bot_file["web"]["allowed_origins"] = [origin]
    bot_file["dialogues"] += dialogues
    bot, _ = import_bot(bot_file)
    return bot


def start_demo_page(
    start_process: Callable[..., GatewayProcess],
    gateway: str,
    bot: Bot,
    websocket: str = "",
    port: int = 0,
) -> str:
    port = port or free_port()
    args = [PYTHON, "manage.py", "demopage", "--port", str(port),
            "--gateway", gateway, f"--web-key={bot.web_key}"]
    if websocket:
        args += ["--websocket", websocket]
    start_process(args)
    url = f"http://localhost:{port}/"
    wait_for_http(url)
    return url


def chat_through_the_bubble(tab: Tab, demo_url: str) -> None:
    page = tab.page
    page.goto(demo_url)
    # Keyboard only: the launcher is the first stop, Enter opens the panel
    # and puts the focus in the message field.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    tab.bot_says("Fjord Coffee assistant")
    assert page.evaluate("document.activeElement.id") == "gwc-input"

    page.keyboard.type("when are you open")
    page.keyboard.press("Enter")
    tab.bot_says("Monday to Friday")

    page.get_by_role("button", name="Where are you?").click()
    tab.bot_says("Harbour Street")


def reload_keeps_the_conversation(tab: Tab) -> None:
    tab.page.reload()
    tab.bot_says("Harbour Street")
    log = tab.log_text()
    for text in ["Fjord Coffee assistant", "when are you open",
                 "Monday to Friday", "Where are you?", "Harbour Street"]:
        assert text in log
    assert log.count("Monday to Friday") == 1


def workers_for(start_worker: Callable[..., GatewayProcess],
                env: dict[str, str] | None = None) -> None:
    """Start a worker when the web process does not run one itself."""
    if settings.REDIS_URL:
        start_worker(env)


def scan_database(needles: list[str]) -> list[str]:
    """Return table.column places where any needle appears, in any table."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - own names
            columns = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    text = value.decode(errors="replace") if isinstance(
                        value, bytes
                    ) else str(value)
                    found += [f"{table}.{column}" for n in needles if n in text]
    return found


def test_chat_with_the_self_hosted_pusher_server_leaves_no_trace_of_the_visitor(
    browser: Browser,
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_worker: Callable[..., GatewayProcess],
    start_process: Callable[..., GatewayProcess],
) -> None:
    web, base = start_web()
    worker_logs: list[GatewayProcess] = []
    if settings.REDIS_URL:
        worker_logs.append(start_worker())
    port = int(base.rsplit(":", 1)[1])
    demo_port = free_port()
    demo_origin = f"http://localhost:{demo_port}"
    with relay(("127.0.0.1", port), VISITOR_ADDRESS) as visitor_route:
        gateway = f"http://127.0.0.1:{visitor_route.port}"
        bot = demo_bot(demo_origin)
        demo_url = start_demo_page(start_process, gateway, bot, port=demo_port)
        tab = Tab(browser.new_page(user_agent=USER_AGENT))
        chat_through_the_bubble(tab, demo_url)

        # A dropped connection: pusher-js reconnects and the chat goes on.
        visitor_route.drop_connections()
        tab.page.locator(".gwc-status", has_text="Reconnected").wait_for(
            timeout=REPLY_TIMEOUT
        )
        tab.page.fill(".gwc-input", "what is on the menu")
        tab.page.keyboard.press("Enter")
        tab.bot_says("cinnamon buns")

        reload_keeps_the_conversation(tab)
        tab.assert_clean()
        assert visitor_route.upstream_sources == {VISITOR_ADDRESS}

    assert off_the_loop(Conversation.objects.count) == 1
    needles = [VISITOR_ADDRESS, USER_AGENT, "visitor-ua-3f9c1e"]
    assert off_the_loop(scan_database, needles) == []
    web.stop()
    # The access log is there, without the address.
    assert '"POST /api/web/v1/messages" 202' in web.output()
    for process in [web, *worker_logs]:
        for needle in needles:
            assert needle not in process.output()


def test_chat_through_pusher_url_against_a_stand_in_cloud(
    browser: Browser,
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_worker: Callable[..., GatewayProcess],
    start_process: Callable[..., GatewayProcess],
) -> None:
    cloud_env = {
        "EMBEDDED_WORKER": "0",
        "PUSHER_APP_ID": "424242",
        "PUSHER_KEY": "cloudkey0123456789ab",
        "PUSHER_SECRET": "cloud-secret-for-tests",
    }
    _, cloud = start_web(cloud_env)
    cloud_port = cloud.rsplit(":", 1)[1]
    env = {
        "PUSHER_URL": f"http://{cloud_env['PUSHER_KEY']}:"
        f"{cloud_env['PUSHER_SECRET']}@127.0.0.1:{cloud_port}/apps/424242",
        "PUSHER_WS_HOST": "127.0.0.1",
        "PUSHER_WS_PORT": cloud_port,
    }
    _, base = start_web(env)
    workers_for(start_worker, env)
    bot = demo_bot("*")
    demo_url = start_demo_page(
        start_process, base, bot, websocket=f"ws://127.0.0.1:{cloud_port}"
    )
    tab = Tab(browser.new_page())
    chat_through_the_bubble(tab, demo_url)
    sockets = tab.page.evaluate("performance.getEntriesByType('resource')"
                                ".map(e => e.name)")
    assert not [name for name in sockets if "pusher.com" in name]
    reload_keeps_the_conversation(tab)
    tab.assert_clean()


def bot_offers_choices(titles: list[str]) -> None:
    """Store the greeting's reply, as a worker would have, with choices."""
    conversation = Conversation.objects.get()
    choices = [{"title": title, "payload": title.lower()} for title in titles]
    Message.objects.create(
        conversation=conversation, channel="web", direction="out", author="bot",
        state="sent", content={"text": "Pick one", "buttons": [], "image": None,
                               "quick_replies": choices},
    )


def test_answered_quick_replies_stay_answered_after_a_reload(
    browser: Browser,
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_process: Callable[..., GatewayProcess],
) -> None:
    # No worker runs: the bot's reply to the visitor's tap stays pending.
    _, base = start_web({"EMBEDDED_WORKER": "0"})
    demo_port = free_port()
    bot = demo_bot(f"http://localhost:{demo_port}")
    demo_url = start_demo_page(start_process, base, bot, port=demo_port)
    tab = Tab(browser.new_page())
    page = tab.page
    page.goto(demo_url)
    page.get_by_role("button", name="Open chat").click()
    page.locator(".gwc-typing").wait_for()
    off_the_loop(bot_offers_choices, ["Menu", "Prices"])

    page.reload()
    tab.bot_says("Pick one")
    chips = page.locator(".gwc-chip")
    chips.first.wait_for()
    assert chips.all_inner_texts() == ["Menu", "Prices"]
    chips.filter(has_text="Menu").click()
    page.locator(".gwc-from-user:not(.gwc-pending)", has_text="Menu").wait_for()

    page.reload()
    tab.bot_says("Pick one")
    page.locator(".gwc-from-user", has_text="Menu").wait_for()
    page.locator(".gwc-typing").wait_for()
    assert chips.count() == 0
    tab.assert_clean()


def phone_tab(browser: Browser) -> Tab:
    return Tab(browser.new_page(
        viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True,
        device_scale_factor=2,
    ))


def horizontal_overflow(page: Page, selector: str) -> int:
    return int(page.evaluate(
        "(selector) => { const node = document.querySelector(selector);"
        " return node.scrollWidth - node.clientWidth; }",
        selector,
    ))


def test_on_a_phone_the_open_panel_fits_the_screen_and_chats(
    browser: Browser,
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_worker: Callable[..., GatewayProcess],
    start_process: Callable[..., GatewayProcess],
) -> None:
    _, base = start_web()
    workers_for(start_worker)
    demo_port = free_port()
    bot = demo_bot(f"http://localhost:{demo_port}")
    demo_url = start_demo_page(start_process, base, bot, port=demo_port)
    tab = phone_tab(browser)
    page = tab.page
    page.goto(demo_url)
    page.get_by_role("button", name="Open chat").tap()
    tab.bot_says("Fjord Coffee assistant")

    assert page.locator(".gwc-panel").bounding_box() == {
        "x": 0, "y": 0, "width": 375, "height": 667,
    }
    for selector in ["html", ".gwc-panel", ".gwc-log", ".gwc-form"]:
        assert horizontal_overflow(page, selector) <= 0, selector
    font_size = page.eval_on_selector(
        ".gwc-input", "(node) => parseFloat(getComputedStyle(node).fontSize)"
    )
    assert font_size >= 16
    page.locator(".gwc-input").tap()
    page.keyboard.type("when are you open")
    page.locator(".gwc-send").tap()
    tab.bot_says("Monday to Friday")
    page.get_by_role("button", name="Where are you?").first.tap()
    tab.bot_says("Harbour Street")
    assert horizontal_overflow(page, ".gwc-log") <= 0
    tab.assert_clean()


# Each emoji is 12 bytes of JSON (escaped surrogates): twice Pusher's limit.
STORY = "🙂" * 1800 + " THE END"
STORY_DIALOGUE = {"id": "story", "samples": ["tell me a long story"],
                  "replies": [{"text": STORY}]}


def tab_to(page: Page, text: str, key: str = "Shift+Tab") -> None:
    """Move the focus with the keyboard until it is on that text's control."""
    for _ in range(20):
        page.keyboard.press(key)
        focused = page.evaluate("document.activeElement.textContent.trim()")
        if focused == text:
            return
    raise AssertionError(f"the keyboard never reached {text!r}")


def test_keyboard_alone_follows_choices_and_a_split_reply_shows_once(
    browser: Browser,
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_worker: Callable[..., GatewayProcess],
    start_process: Callable[..., GatewayProcess],
) -> None:
    _, base = start_web()
    workers_for(start_worker)
    demo_port = free_port()
    bot = demo_bot(f"http://localhost:{demo_port}", STORY_DIALOGUE)
    demo_url = start_demo_page(start_process, base, bot, port=demo_port)
    tab = Tab(browser.new_page())
    page = tab.page
    frames: list[str] = []

    def watch(socket: Any) -> None:
        socket.on("framereceived", lambda frame: frames.append(str(frame)))

    page.on("websocket", watch)
    page.goto(demo_url)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    tab.bot_says("Fjord Coffee assistant")

    # From the message field back to a quick reply, then to a button.
    tab_to(page, "Opening hours")
    page.keyboard.press("Enter")
    tab.bot_says("Monday to Friday")
    website = page.get_by_role("link", name="Website (opens in a new tab)")
    assert website.get_attribute("href") == "https://example.com/"
    page.locator(".gwc-input").focus()
    tab_to(page, "Where are you?")
    page.keyboard.press("Enter")
    tab.bot_says("Harbour Street")

    page.locator(".gwc-input").focus()
    page.keyboard.type("tell me a long story")
    page.keyboard.press("Enter")
    tab.bot_says("THE END")
    [story] = [text for text in page.locator(".gwc-from-bot .gwc-text")
               .all_inner_texts() if "🙂" in text]
    assert story == STORY
    # It came in parts: the event data is JSON inside the frame's JSON.
    parts = [frame for frame in frames if '\\"parts\\":' in frame]
    assert len(parts) >= 2

    page.keyboard.press("Escape")
    assert page.locator(".gwc-panel").is_hidden()
    assert page.evaluate("document.activeElement.className") == "gwc-launcher"
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    tab.bot_says("THE END")
    assert page.locator(".gwc-from-bot", has_text="THE END").count() == 1
    tab.assert_clean()


def bot_offers_unsafe_links() -> None:
    """Store a reply with links no bot file allows, as an admin could have."""
    conversation = Conversation.objects.get()
    Message.objects.create(
        conversation=conversation, channel="web", direction="out", author="bot",
        state="sent", content={
            "text": "Have a look", "image": "http://insecure.example/cat.png",
            "buttons": [{"title": "Run me", "url": "javascript:alert(1)"},
                        {"title": "Plain", "url": "http://insecure.example/"},
                        {"title": "Safe", "url": "https://example.com/safe"}],
            "quick_replies": [],
        },
    )


def typing_said(page: Page) -> str:
    return str(page.inner_text(".gwc-typing-status"))


def test_typing_is_announced_links_are_https_and_429_says_how_long(
    browser: Browser,
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_process: Callable[..., GatewayProcess],
) -> None:
    # No worker runs: the greeting stays unanswered, the bot "typing".
    _, base = start_web({"EMBEDDED_WORKER": "0"})
    demo_port = free_port()
    bot = demo_bot(f"http://localhost:{demo_port}")
    demo_url = start_demo_page(start_process, base, bot, port=demo_port)
    tab = Tab(browser.new_page())
    page = tab.page
    page.goto(demo_url)
    live = page.locator(".gwc-typing-status")
    assert (live.get_attribute("role"), live.get_attribute("aria-live")) == (
        "status", "polite",
    )
    assert typing_said(page) == ""
    page.get_by_role("button", name="Open chat").click()
    page.locator(".gwc-typing").wait_for()
    assert typing_said(page) == "Fjord Coffee assistant is typing…"

    off_the_loop(bot_offers_unsafe_links)
    page.reload()
    tab.bot_says("Have a look")
    assert typing_said(page) == ""
    reply = page.locator(".gwc-from-bot", has_text="Have a look")
    assert reply.locator("img").count() == 0
    links = reply.locator("a")
    assert links.evaluate_all("(links) => links.map((a) => a.href)") == [
        "https://example.com/safe",
    ]
    assert "Run me" not in reply.inner_text()

    # The history may be read 30 times a minute; the bubble reads the
    # Retry-After of the 31st refusal and says how long to wait.
    page.evaluate("""async () => {
      const session = JSON.parse(Object.entries(localStorage)
        .find(([key]) => key.startsWith("gateway-chat:"))[1]);
      const api = new URL(document.querySelector("script[data-bot]").src).origin;
      for (let n = 0; n < 30; n += 1) {
        await fetch(api + "/api/web/v1/messages",
                    {headers: {Authorization: "Bearer " + session.token}});
      }
    }""")
    page.reload()
    status = page.locator(".gwc-status", has_text="Too many messages")
    status.wait_for(timeout=REPLY_TIMEOUT)
    waited = status.inner_text().split("wait ")[1].split(" ")[0]
    assert 1 <= int(waited) <= 60
    # Chromium itself logs each refused request; the page's script logged
    # nothing.
    tab.problems = [p for p in tab.problems if "status of 429" not in p]
    tab.assert_clean()
