"""The Memories page in a real browser: Debian's Chromium driven by Playwright against a
live server. Each test checks what the page shows and what the store holds afterwards.

Screenshots of the key steps land in tmp/screenshots/ (1280 px and 390 px wide).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from playwright.sync_api import (
    APIResponse,
    Browser,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)

from live_server import live_server
from noted import Memory, SqliteDb
from noted.models.types import Message, ToolCall
from noted.retrieval.embedders import BaseEmbedder, Kind
from noted.schema import UserMemory
from noted.server import create_app, issue_token
from noted.sessions import RunResult, SessionSummary, new_run_id

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "tmp" / "screenshots"
API_KEY = "k" * 32
TOKEN_SECRET = "s" * 32
# Chromium logs every 4xx and 5xx answer, and a refused connection, as a console error;
# the tests that provoke them expect them.
EXPECTED_CONSOLE = re.compile(
    r"Failed to load resource: (the server responded with a status of (40[149]|503)"
    r"|net::ERR_CONNECTION_REFUSED)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = (
            "the page tests need Chromium at /usr/bin/chromium: run scripts/system-deps.sh "
            "(or apt-get install chromium chromium-driver)"
        )
        if os.environ.get("NOTED_REQUIRE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab at 1280x800 that fails the test on a script error, an alert, a console
    error or a request that leaves 127.0.0.1 (the page must work offline)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(5000)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not EXPECTED_CONSOLE.search(message.text):
            problems.append(f"console error: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"a {dialog.type} dialog opened: {dialog.message}")
        dialog.dismiss()

    def on_request(request: Request) -> None:
        if not request.url.startswith(("http://127.0.0.1:", "data:")):
            problems.append(f"a request left the server: {request.url}")

    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", on_console)
    tab.on("dialog", on_dialog)
    tab.on("request", on_request)
    yield tab
    context.close()
    assert not problems


@dataclass
class Site:
    url: str
    store: SqliteDb
    memory: Memory

    def add(self, text: str, user: str, topics: Sequence[str] = ()) -> str:
        return self.memory.add_user_memory(UserMemory(text, topics=list(topics)), user)

    def texts(self, user: str) -> list[str]:
        return [m.memory for m in self.memory.get_user_memories(user)]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = SqliteDb(db_file=tmp_path / "page.db")
    try:
        with live_server(create_app(store)) as url:
            yield Site(url, store, Memory(store))
    finally:
        store.close()


# -- helpers -------------------------------------------------------------------------------


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#app")).to_be_visible()


def rows(page: Page) -> Locator:
    return page.get_by_test_id("memory-row")


def row(page: Page, text: str) -> Locator:
    return rows(page).filter(has_text=text)


def row_attr(page: Page, name: str) -> list[str]:
    return rows(page).evaluate_all(f"rows => rows.map(r => r.dataset.{name})")


def user_item(page: Page, user: str) -> Locator:
    return page.locator(f'[data-testid=user-item][data-user-id="{user}"]')


def pick_user(page: Page, user: str) -> None:
    user_item(page, user).click()
    expect(user_item(page, user)).to_have_attribute("aria-pressed", "true")


def no_overflow(page: Page) -> None:
    sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], f"the page is {sizes[0]} px wide in a {sizes[1]} px window"


class Held:
    """A slow network on cue: the requests ``holding`` picks are answered by the server at
    once, and their answers reach the page when :meth:`release` lets them; every other
    request goes through."""

    def __init__(self, page: Page, pattern: str, holding: Callable[[str], bool]) -> None:
        self.page = page
        self.holding = holding
        self.routes: list[tuple[Route, APIResponse]] = []
        page.route(pattern, self._route)

    def _route(self, route: Route) -> None:
        if self.holding(route.request.url):
            self.routes.append((route, route.fetch()))
        else:
            route.continue_()

    def wait(self, count: int = 1) -> None:
        """Until ``count`` requests are held (their answers' events are being read)."""
        for _ in range(500):
            if len(self.routes) >= count:
                return
            self.page.wait_for_timeout(10)
        raise AssertionError(f"{len(self.routes)} requests held, not {count}")

    def release(self) -> None:
        routes, self.routes = self.routes, []
        for route, answer in routes:
            route.fulfill(response=answer)


def record_fetches(page: Page) -> None:
    """Keep the address of every fetch the page makes, in ``window.fetched``: a click's
    requests are made while the click is handled, so they are all there once it returns.
    And of every answer the page has read, in ``window.answered``: the page acts on an
    answer as soon as it has read it (in the same task), so once an address is there,
    what the page does with its answer is done."""
    page.add_init_script(
        """(() => {
            const fetchFirst = window.fetch.bind(window);
            const readFirst = Response.prototype.text;
            window.fetched = [];
            window.answered = [];
            window.fetch = (input, init) => {
                window.fetched.push(input instanceof Request ? input.url : String(input));
                return fetchFirst(input, init);
            };
            Response.prototype.text = async function () {
                const body = await readFirst.call(this);
                window.answered.push(this.url);
                return body;
            };
        })()"""
    )


def wait_answered(page: Page, path: str, count: int) -> None:
    """Until the page has read ``count`` answers for ``path`` (in all)."""
    page.wait_for_function(
        "([path, count]) => window.answered.filter("
        "u => new URL(u).pathname === path).length >= count",
        arg=[path, count],
    )


def fetched(page: Page, path: str) -> list[dict[str, list[str]]]:
    """The queries of the page's requests for ``path`` so far, in order."""
    urls = page.evaluate("window.fetched")
    return [parse_qs(urlsplit(u).query) for u in urls if urlsplit(u).path == path]


# -- tests ---------------------------------------------------------------------------------


def test_create_a_memory(site: Site, page: Page) -> None:
    open_app(page, site.url)
    expect(page.get_by_test_id("empty")).to_contain_text("No memories yet")
    page.click("#new-memory")
    page.click("#create-submit")
    expect(page.locator("#create-error")).to_contain_text("Write what the agent should remember")
    page.fill("#new-text", "Prefers tea over coffee in the afternoon")
    page.fill("#new-topics", "drinks,  habits , drinks,")
    page.fill("#new-user", "carol")
    shot(page, "create-form-1280")
    page.click("#create-submit")

    created = row(page, "Prefers tea over coffee")
    expect(created).to_have_count(1)
    expect(created.get_by_test_id("topic")).to_have_text(["drinks", "habits"])
    expect(created.get_by_test_id("memory-user")).to_have_text("carol")
    expect(page.locator("#create-form")).to_be_hidden()
    expect(page.get_by_test_id("notice")).to_have_text("Saved a memory for carol")
    expect(user_item(page, "carol").get_by_test_id("user-count")).to_have_text("1 memory")
    stored = site.memory.get_user_memories("carol")
    assert [(m.memory, m.topics) for m in stored] == [
        ("Prefers tea over coffee in the afternoon", ["drinks", "habits"])
    ]
    assert row_attr(page, "memoryId") == [stored[0].memory_id]


def test_search_needs_a_user_then_finds_its_memories(site: Site, page: Page) -> None:
    site.add("Drinks oat milk coffee every morning", "alice", ["drinks"])
    site.add("Climbs at the bouldering gym on weekends", "alice", ["sport"])
    site.add("Takes coffee black, no sugar", "bob", ["drinks"])
    open_app(page, site.url)
    search = page.locator("#search")
    expect(rows(page)).to_have_count(3)
    expect(search).to_be_disabled()
    expect(page.get_by_test_id("search-hint")).to_contain_text("pick a user")
    expect(page.locator("#search-type-field")).to_be_hidden()  # keyword search only here

    pick_user(page, "alice")
    expect(search).to_be_enabled()
    expect(rows(page)).to_have_count(2)
    search.fill("coffee")
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(
        ["Drinks oat milk coffee every morning"]
    )
    found = site.memory.search_user_memories("coffee", "alice", retrieval_method="keyword")
    assert row_attr(page, "memoryId") == [m.memory_id for m in found]
    expect(page.get_by_test_id("page-info")).to_have_text("Page 1 of 1 · 1 match")
    expect(page.locator("#sort")).to_be_disabled()
    shot(page, "search-1280")

    search.fill("volcano")
    expect(page.get_by_test_id("empty")).to_contain_text("Nothing matches “volcano”")
    search.fill("")
    expect(rows(page)).to_have_count(2)
    search.fill("coffee")
    expect(rows(page)).to_have_count(1)
    page.get_by_test_id("user-all").click()
    expect(search).to_be_disabled()
    expect(search).to_have_value("")
    expect(rows(page)).to_have_count(3)


class WordsEmbedder(BaseEmbedder):
    """Hashed word counts: texts that share words are close. Enough to turn on semantic search."""

    def __init__(self) -> None:
        super().__init__("test-words", 64)

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[i, zlib.crc32(word.encode()) % 64] += 1.0
        return vectors


def test_search_types_when_the_server_has_an_embedder(tmp_path: Path, page: Page) -> None:
    store = SqliteDb(db_file=tmp_path / "page.db")
    memory = Memory(store, embedder=WordsEmbedder())
    memory.add_user_memory(UserMemory("Plays the cello in a string quartet"), "alice")
    memory.add_user_memory(UserMemory("Allergic to shellfish"), "alice")
    with live_server(create_app(memory=memory)) as url:
        open_app(page, url)
        pick_user(page, "alice")
        field = page.locator("#search-type-field")
        expect(field).to_be_visible()
        expect(field.locator("option")).to_have_text(["Words and meaning", "Meaning", "Words"])
        page.select_option("#search-type", "semantic")
        with page.expect_request(lambda r: "search_type=semantic" in r.url):
            page.fill("#search", "cello quartet")
        expect(rows(page).first.get_by_test_id("memory-text")).to_have_text(
            "Plays the cello in a string quartet"
        )
        best = memory.search_user_memories("cello quartet", "alice", retrieval_method="semantic")
        assert row_attr(page, "memoryId")[0] == best[0].memory_id
    store.close()


def test_edit_in_place(site: Site, page: Page) -> None:
    memory_id = site.add("Lives in Lisbon", "alice", ["home"])
    open_app(page, site.url)
    row(page, "Lives in Lisbon").locator("[data-action=edit]").click()
    text = page.get_by_test_id("edit-text")
    topics = page.get_by_test_id("edit-topics")
    expect(text).to_be_focused()
    expect(text).to_have_value("Lives in Lisbon")
    expect(topics).to_have_value("home")
    text.fill("Something else entirely")
    text.press("Escape")  # cancels: nothing is written
    expect(text).to_have_count(0)
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Lives in Lisbon"])

    row(page, "Lives in Lisbon").locator("[data-action=edit]").click()
    text.fill("Lives in Porto since 2024")
    topics.fill("home, travel")
    shot(page, "edit-1280")
    page.locator("[data-action=save]").click()
    edited = row(page, "Lives in Porto since 2024")
    expect(edited.get_by_test_id("topic")).to_have_text(["home", "travel"])
    expect(page.get_by_test_id("edit-text")).to_have_count(0)
    stored = site.memory.get_user_memory(memory_id, "alice")
    assert stored is not None
    assert (stored.memory, stored.topics) == ("Lives in Porto since 2024", ["home", "travel"])

    edited.locator("[data-action=edit]").click()  # Ctrl+Enter saves as well
    text.fill("Lives in Porto")
    text.press("Control+Enter")
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Lives in Porto"])
    stored = site.memory.get_user_memory(memory_id, "alice")
    assert stored is not None
    assert (stored.memory, stored.topics) == ("Lives in Porto", ["home", "travel"])


def test_the_topics_of_a_memory_over_the_pages_limit_can_be_edited(site: Site, page: Page) -> None:
    # Stored through the library with a higher limit than the server's 5,000 characters.
    long_text = "Keeps a travel diary: " + " ".join(["Lisbon, Porto, Faro."] * 300)
    [memory_id] = Memory(site.store, max_memory_length=10_000).add_user_memories(
        [UserMemory(long_text, topics=["travel"])], user_id="alice"
    )
    open_app(page, site.url)
    row(page, "Keeps a travel diary").locator("[data-action=edit]").click()
    page.get_by_test_id("edit-topics").fill("travel, diary")
    page.locator("[data-action=save]").click()
    expect(page.get_by_test_id("notice")).to_have_text("Memory saved")
    stored = site.memory.get_user_memory(memory_id, "alice")
    assert stored is not None and (stored.memory, stored.topics) == (long_text, ["travel", "diary"])

    row(page, "Keeps a travel diary").locator("[data-action=edit]").click()
    page.get_by_test_id("edit-text").fill(long_text + " Braga.")
    page.locator("[data-action=save]").click()
    expect(page.locator("#error-text")).to_contain_text("at most 5,000 characters")
    stored = site.memory.get_user_memory(memory_id, "alice")
    assert stored is not None and stored.memory == long_text


def test_the_topics_of_a_memory_with_windows_line_breaks_are_edited_alone(
    site: Site, page: Page
) -> None:
    """A text with CRLF line breaks (imported from a Windows file) reads back from the
    edit box with LF ones: it was taken for a changed text, refused when over the page's
    5,000 characters and otherwise sent and stored with its line breaks changed."""
    long_text = "Travel diary\r\n" + "\r\n".join(["Lisbon, Porto, Faro."] * 300)
    short_text = "Shopping list\r\nTea\r\nBread"
    kept = Memory(site.store, max_memory_length=10_000).add_user_memories(
        [UserMemory(long_text, topics=["travel"]), UserMemory(short_text, topics=["home"])],
        user_id="alice",
    )
    open_app(page, site.url)
    for first_line, topics in (("Travel diary", ["travel", "diary"]), ("Shopping list", ["food"])):
        row(page, first_line).locator("[data-action=edit]").click()
        page.get_by_test_id("edit-topics").fill(", ".join(topics))
        page.locator("[data-action=save]").click()
        expect(page.get_by_test_id("notice")).to_have_text("Memory saved")
        expect(page.locator("[data-action=save]")).to_have_count(0)
    stored = [site.memory.get_user_memory(memory_id, "alice") for memory_id in kept]
    assert [(m.memory, m.topics) for m in stored if m is not None] == [
        (long_text, ["travel", "diary"]),
        (short_text, ["food"]),
    ]


def test_a_long_memory_shows_its_first_lines_until_unfolded(site: Site, page: Page) -> None:
    long_text = "Keeps a travel diary: " + " ".join(["Lisbon, Porto, Faro."] * 200)
    site.add(long_text, "alice")
    site.add("Likes green tea", "alice")
    open_app(page, site.url)
    text = row(page, "Keeps a travel diary").get_by_test_id("memory-text")
    toggle = row(page, "Keeps a travel diary").get_by_test_id("fold-toggle")
    expect(toggle).to_have_text(f"Show all {len(long_text):,} characters")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(text).to_have_text(long_text)  # whole in the page, its first lines on screen
    line = text.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)")
    assert text.evaluate("el => el.clientHeight") <= 6 * line + 1
    expect(row(page, "Likes green tea").get_by_test_id("fold-toggle")).to_have_count(0)

    toggle.click()
    expect(toggle).to_have_text("Show less")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(toggle).to_be_focused()
    assert text.evaluate("el => el.clientHeight") > 12 * line
    page.click("#new-memory")  # a redraw after a write keeps it unfolded
    page.fill("#new-text", "Walks to work")
    page.fill("#new-user", "alice")
    page.click("#create-submit")
    expect(rows(page)).to_have_count(3)
    expect(toggle).to_have_text("Show less")
    toggle.click()
    expect(toggle).to_have_text(f"Show all {len(long_text):,} characters")


def test_a_memory_with_damaged_topics_is_flagged_and_an_edit_repairs_it(
    site: Site, page: Page
) -> None:
    """A memory whose stored topics are damaged (a hand-edited file) emptied the whole
    list: its user's listing failed. The page now lists it beside the others, flagged in
    its topics' place (what is wrong in the flag's title); saving an edit of it gives it
    the topics typed, which repairs it."""
    site.add("Likes tea", "alice", ["food"])
    memory_id = site.add("Rows on Sundays", "alice", ["sport"])
    with sqlite3.connect(site.store.db_file) as connection:
        connection.execute(
            f"UPDATE {site.store.memory_table} SET topics = ? WHERE memory_id = ?",
            ('{"sport": 1}', memory_id),
        )
    connection.close()
    open_app(page, site.url)
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Rows on Sundays", "Likes tea"])
    flag = row(page, "Rows on Sundays").get_by_test_id("damaged")
    expect(flag).to_have_text("⚠ Damaged topics")
    expect(flag).to_have_attribute("title", re.compile("not a JSON list of strings"))
    expect(row(page, "Likes tea").get_by_test_id("topic")).to_have_text(["food"])
    expect(row(page, "Likes tea").get_by_test_id("damaged")).to_have_count(0)
    shot(page, "damaged-1280")
    row(page, "Rows on Sundays").locator("[data-action=edit]").click()
    expect(page.get_by_test_id("edit-topics")).to_have_value("")
    page.get_by_test_id("edit-text").fill("Rows on Sunday mornings")  # the text alone
    page.locator("[data-action=save]").click()
    repaired = row(page, "Rows on Sunday mornings")
    expect(repaired).to_have_count(1)  # the save answered (a missing row has no flag either)
    expect(repaired.get_by_test_id("damaged")).to_have_count(0)
    stored = site.memory.get_user_memory(memory_id, "alice")
    assert stored is not None
    assert (stored.memory, stored.topics, stored.damaged) == ("Rows on Sunday mornings", [], None)
    row(page, "Rows on Sunday mornings").locator("[data-action=edit]").click()
    page.get_by_test_id("edit-topics").fill("sport")
    page.locator("[data-action=save]").click()
    expect(row(page, "Rows on Sunday mornings").get_by_test_id("topic")).to_have_text(["sport"])
    assert site.memory.get_user_memory(memory_id, "alice").topics == ["sport"]  # type: ignore[union-attr]


def test_an_edit_keeps_what_it_leaves_and_what_is_typed(site: Site, page: Page) -> None:
    memory_id = site.add("Went to Rome", "alice", ["travel, europe"])  # a topic with a comma
    open_app(page, site.url)
    row(page, "Went to Rome").locator("[data-action=edit]").click()
    text = page.get_by_test_id("edit-text")
    text.fill("Went to Rome in May")
    # another change redraws the table while the row is being edited: the draft stays
    page.click("#new-memory")
    page.fill("#new-text", "Likes tea")
    page.click("#create-submit")
    expect(row(page, "Likes tea")).to_have_count(1)
    expect(text).to_have_value("Went to Rome in May")
    page.locator("[data-action=save]").click()
    expect(rows(page).get_by_test_id("memory-text")).to_contain_text(["Went to Rome in May"])
    stored = site.memory.get_user_memory(memory_id, "alice")
    assert stored is not None
    assert (stored.memory, stored.topics) == ("Went to Rome in May", ["travel, europe"])


def test_a_save_over_a_change_made_elsewhere_asks_first(site: Site, page: Page) -> None:
    """Another tab saves the memory while this one edits it: this save is refused, says
    what the memory now reads, keeps what was typed, and a second save replaces it."""
    memory_id = site.add("Lives in Lisbon", "alice", ["home"])
    open_app(page, site.url)
    row(page, "Lives in Lisbon").locator("[data-action=edit]").click()
    text = page.get_by_test_id("edit-text")
    text.fill("Lives in Lisbon since 2019")
    other = site.memory.edit_user_memory(memory_id, "alice", memory="Lives in Lisbon, Alfama")
    page.locator("[data-action=save]").click()
    expect(page.get_by_test_id("error")).to_contain_text(
        "This memory was changed elsewhere after you began editing it; it now reads "
        "“Lives in Lisbon, Alfama”. Your edit is kept"
    )
    expect(text).to_have_value("Lives in Lisbon since 2019")
    expect(rows(page).locator("time")).to_have_attribute("datetime", other.to_dict()["updated_at"])
    stored = site.memory.get_user_memory(memory_id, "alice")
    assert stored is not None
    assert (stored.memory, stored.updated_at) == ("Lives in Lisbon, Alfama", other.updated_at)

    page.locator("[data-action=save]").click()  # made knowing the other change: written
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Lives in Lisbon since 2019"])
    expect(page.get_by_test_id("notice")).to_have_text("Memory saved")
    assert site.texts("alice") == ["Lives in Lisbon since 2019"]


def test_lengths_are_counted_in_characters(site: Site, page: Page) -> None:
    open_app(page, site.url)
    page.click("#new-memory")
    page.fill("#new-text", "\U0001f642" * 3000)  # 3,000 characters, 6,000 UTF-16 units
    expect(page.locator("#new-text-count")).to_have_text("3,000 / 5,000")
    page.fill("#new-user", "alice")
    page.click("#create-submit")
    expect(page.locator("#create-form")).to_be_hidden()
    assert site.texts("alice") == ["\U0001f642" * 3000]
    page.click("#new-memory")
    page.fill("#new-text", "\U0001f642" * 5001)
    page.click("#create-submit")
    expect(page.locator("#create-error")).to_have_text(
        "A memory holds at most 5,000 characters; this one has 5,001."
    )
    assert len(site.texts("alice")) == 1


def test_all_users_shows_no_count_until_every_user_is_loaded(site: Site, page: Page) -> None:
    site.memory.import_user_memories(
        [UserMemory(f"Fact of user {n}", user_id=f"user{n:02d}") for n in range(55)]
    )
    open_app(page, site.url)
    everyone = page.get_by_test_id("user-all").get_by_test_id("user-count")
    expect(everyone).to_have_text("")  # 50 of 55 users loaded: their sum is not the total
    page.click("#more-users")
    expect(everyone).to_have_text("55 memories")


def test_a_write_keeps_the_users_shown_with_show_more(site: Site, page: Page) -> None:
    """A user listed from the second page of users keeps its place and its new count after
    a write: the page reloads as many pages of users as it lists."""
    for n in range(60):  # user-000 has the oldest memories: it comes last
        site.memory.add_user_memories(
            [UserMemory(f"Fact {i} of user-{n:03d}") for i in range(3)], f"user-{n:03d}"
        )
    open_app(page, site.url)
    users = page.get_by_test_id("user-item")
    expect(users).to_have_count(50)
    page.click("#more-users")
    expect(users).to_have_count(60)
    pick_user(page, "user-005")
    count = user_item(page, "user-005").get_by_test_id("user-count")
    expect(count).to_have_text("3 memories")
    expect(rows(page)).to_have_count(3)
    rows(page).first.locator("[data-action=delete]").click()
    page.click("#confirm-ok")
    expect(rows(page)).to_have_count(2)
    expect(count).to_have_text("2 memories")
    expect(users).to_have_count(60)
    expect(page.get_by_test_id("user-all").get_by_test_id("user-count")).to_have_text(
        "179 memories"
    )
    assert users.evaluate_all("els => els.map(e => e.dataset.userId)") == [
        s.user_id for s in site.memory.get_user_stats()
    ]
    expect(page.locator("#more-users")).to_be_hidden()


def test_delete_asks_first(site: Site, page: Page) -> None:
    kept = site.add("Has a cat named Miso", "alice", ["pets"])
    doomed = site.add("Dislikes cilantro", "alice", ["food"])
    open_app(page, site.url)
    dialog = page.locator("#confirm-dialog")

    row(page, "Dislikes cilantro").locator("[data-action=delete]").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Dislikes cilantro")
    shot(page, "confirm-delete-1280")
    page.click("#confirm-cancel")
    expect(dialog).to_be_hidden()
    row(page, "Dislikes cilantro").locator("[data-action=delete]").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(rows(page)).to_have_count(2)
    assert site.memory.get_user_memory(doomed, "alice") is not None

    row(page, "Dislikes cilantro").locator("[data-action=delete]").click()
    page.click("#confirm-ok")
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Has a cat named Miso"])
    expect(page.get_by_test_id("notice")).to_have_text("Memory deleted")
    expect(user_item(page, "alice").get_by_test_id("user-count")).to_have_text("1 memory")
    assert site.memory.get_user_memory(doomed, "alice") is None
    assert site.memory.get_user_memory(kept, "alice") is not None


def test_user_picker_stats_and_topic_filter(site: Site, page: Page) -> None:
    site.add("Alice works remotely", "alice", ["work"])
    site.add("Alice has two kids", "alice", ["family"])
    site.add("Alice runs on Sundays", "alice", ["sport", "family"])
    site.add("Bob is vegetarian", "bob", ["food"])
    site.add("Bob plays chess", "bob", ["games"])
    open_app(page, site.url)
    expect(rows(page)).to_have_count(5)
    stats = site.memory.get_user_stats()
    users = page.get_by_test_id("user-item")
    expect(users.locator(".user-name")).to_have_text([s.user_id for s in stats])  # bob first
    for s in stats:
        expect(user_item(page, s.user_id).get_by_test_id("user-count")).to_have_text(
            f"{s.memory_count} memories"
        )
        expect(user_item(page, s.user_id).locator("time")).to_have_attribute(
            "datetime", s.last_updated.isoformat(timespec="microseconds")
        )
    expect(page.get_by_test_id("user-all")).to_contain_text("5 memories")

    pick_user(page, "bob")
    expect(rows(page)).to_have_count(2)
    assert row_attr(page, "userId") == ["bob", "bob"]
    expect(page.locator("#topic-filter option")).to_have_text(["All topics", "food", "games"])

    pick_user(page, "alice")
    expect(rows(page)).to_have_count(3)
    page.select_option("#topic-filter", "family")
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(
        [m.memory for m in site.memory.get_user_memories("alice", topics=["family"])]
    )
    shot(page, "user-filter-1280")


def test_bulk_delete_across_users(site: Site, page: Page) -> None:
    a1 = site.add("Alice one", "alice")
    a2 = site.add("Alice two", "alice")
    b1 = site.add("Bob one", "bob")
    b2 = site.add("Bob two", "bob")
    c1 = site.add("Carol one", "carol")
    open_app(page, site.url)
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            bodies.append(json.loads(r.post_data or "{}"))
            if r.method == "DELETE" and r.url.endswith("/memories")
            else None
        ),
    )
    for text in ("Alice one", "Alice two", "Bob one"):
        row(page, text).locator("[data-action=select]").check()
    expect(page.get_by_test_id("bulk-bar")).to_be_visible()
    expect(page.locator("#bulk-count")).to_have_text("3 memories selected (2 users)")
    shot(page, "bulk-select-1280")
    page.click("#bulk-delete")
    expect(page.locator("#confirm-dialog")).to_contain_text("alice, bob")
    page.click("#confirm-ok")
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Carol one", "Bob two"])
    expect(page.get_by_test_id("notice")).to_have_text("Deleted 3 memories")
    expect(page.get_by_test_id("bulk-bar")).to_be_hidden()
    assert sorted((b["user_id"], sorted(b["memory_ids"])) for b in bodies) == [
        ("alice", sorted([a1, a2])),
        ("bob", [b1]),
    ]
    assert site.texts("alice") == []
    assert [m.memory_id for m in site.memory.get_user_memories("bob")] == [b2]
    assert [m.memory_id for m in site.memory.get_user_memories("carol")] == [c1]

    page.check("#select-all")
    expect(page.locator("#bulk-count")).to_have_text("2 memories selected (2 users)")
    page.click("#bulk-clear")
    expect(page.get_by_test_id("bulk-bar")).to_be_hidden()
    expect(page.locator("#select-all")).not_to_be_checked()


def _run(session_id: str, user: str, said: str, answer: str, *extra: Message) -> RunResult:
    messages = [Message("user", said), *extra, Message("assistant", answer)]
    return RunResult(
        run_id=new_run_id(),
        session_id=session_id,
        user_id=user,
        input=said,
        content=answer,
        messages=messages,
    )


def test_history_and_session_transcript(site: Site, page: Page) -> None:
    memory_id = site.add("Lives in Lisbon", "alice", ["home"])
    site.memory.replace_user_memory(
        memory_id, UserMemory("Lives in Porto", topics=["home", "travel"]), "alice"
    )
    site.store.append_run(_run("trip", "alice", "I moved to Porto", "Welcome to Porto!"))
    lookup = ToolCall(id="call-1", name="find_routes", arguments={"city": "Porto"})
    site.store.append_run(
        _run(
            "trip",
            "alice",
            "Any running routes?",
            "Try the Douro riverside.",
            Message("assistant", None, tool_calls=[lookup]),
            Message("tool", "3 routes found", tool_call_id="call-1", name="find_routes"),
        )
    )
    site.store.set_session_summary(
        "trip",
        "alice",
        SessionSummary("Alice moved to Porto and asked about running.", ["home"], 2),
    )
    site.store.append_run(_run("chess", "bob", "Best opening?", "Try the Italian."))
    open_app(page, site.url)

    row(page, "Lives in Porto").locator("[data-action=history]").click()
    events = page.locator("#history-dialog").get_by_test_id("history-event")
    history = site.memory.get_memory_history(memory_id, "alice")
    expect(events).to_have_count(len(history))
    assert events.evaluate_all("els => els.map(e => e.dataset.event)") == ["add", "update"]
    assert [e.event for e in history] == ["add", "update"]
    expect(events.nth(0).locator(".new-text")).to_have_text("Lives in Lisbon")
    expect(events.nth(1).locator(".old-text")).to_have_text("Lives in Lisbon")
    expect(events.nth(1).locator(".new-text")).to_have_text("Lives in Porto")
    expect(events.nth(1).locator("ins [data-testid=topic]")).to_have_text(["home", "travel"])
    shot(page, "history-1280")
    page.locator("#history-dialog [data-close]").click()
    expect(page.locator("#history-dialog")).to_be_hidden()

    pick_user(page, "alice")
    page.click("#tab-sessions")
    sessions = page.get_by_test_id("session-item")
    expect(sessions).to_have_count(1)
    expect(sessions).to_contain_text("Alice moved to Porto")
    sessions.click()
    dialog = page.locator("#session-dialog")
    expect(dialog.get_by_test_id("session-summary")).to_contain_text(
        "Alice moved to Porto and asked about running."
    )
    expect(dialog.get_by_test_id("run")).to_have_count(2)
    messages = dialog.get_by_test_id("message")
    expect(messages).to_have_count(6)
    stored = site.store.get_session("trip", "alice")
    assert stored is not None
    assert messages.evaluate_all("els => els.map(e => e.dataset.role)") == [
        m.role for run in stored.runs for m in run.messages
    ]
    expect(messages.nth(0)).to_contain_text("I moved to Porto")
    expect(messages.nth(3)).to_contain_text('find_routes({"city":"Porto"})')
    expect(messages.nth(4)).to_contain_text("3 routes found")
    expect(messages.nth(5)).to_contain_text("Try the Douro riverside.")
    shot(page, "session-1280")
    page.keyboard.press("Escape")
    page.get_by_test_id("user-all").click()
    expect(sessions).to_have_count(2)


def test_a_long_session_shows_its_newest_runs_then_older_ones(site: Site, page: Page) -> None:
    site.add("Likes long talks", "alice", ["talk"])
    for i in range(25):
        site.store.append_run(_run("long", "alice", f"Message {i + 1}", f"Answer {i + 1}"))
    open_app(page, site.url)
    pick_user(page, "alice")
    page.click("#tab-sessions")
    page.get_by_test_id("session-item").click()
    dialog = page.locator("#session-dialog")
    runs = dialog.get_by_test_id("run")
    expect(runs).to_have_count(20)
    expect(runs.nth(0)).to_contain_text("Run 6")
    expect(runs.nth(0)).to_contain_text("Message 6")
    expect(runs.nth(19)).to_contain_text("Run 25")
    older = dialog.get_by_test_id("older-runs")
    expect(older).to_contain_text("5 more")
    older.click()
    expect(runs).to_have_count(25)
    expect(runs.nth(0)).to_contain_text("Run 1")
    expect(runs.nth(0)).to_contain_text("Message 1")
    expect(older).to_have_count(0)


def test_older_runs_are_read_right_after_runs_came_while_the_session_was_open(
    site: Site, page: Page
) -> None:
    # runs that came after the session was opened shifted the pages (counted from the
    # newest): "Show older runs" numbered the older runs from "Run 4" and stayed, saying
    # "3 more", reading an empty page at each click; 25 more runs put newer runs above
    # the oldest ones
    site.add("Likes long talks", "alice", ["talk"])
    for i in range(25):
        site.store.append_run(_run("long", "alice", f"Message {i + 1}", f"Answer {i + 1}"))
    open_app(page, site.url)
    pick_user(page, "alice")
    page.click("#tab-sessions")
    page.get_by_test_id("session-item").click()
    dialog = page.locator("#session-dialog")
    runs = dialog.get_by_test_id("run")
    expect(runs).to_have_count(20)
    for i in range(25, 28):  # the session goes on meanwhile
        site.store.append_run(_run("long", "alice", f"Message {i + 1}", f"Answer {i + 1}"))
    older = dialog.get_by_test_id("older-runs")
    expect(older).to_contain_text("5 more")
    older.click()
    expect(runs).to_have_count(25)
    expect(runs.nth(0)).to_contain_text("Run 1")
    expect(runs.nth(0)).to_contain_text("Message 1")
    expect(runs.nth(24)).to_contain_text("Run 25")
    expect(runs.nth(24)).to_contain_text("Message 25")
    expect(older).to_have_count(0)

    page.locator("#session-dialog [data-close]").click()
    page.get_by_test_id("session-item").click()
    expect(runs).to_have_count(20)
    expect(runs.nth(0)).to_contain_text("Message 9")
    for i in range(28, 53):  # more runs than a page
        site.store.append_run(_run("long", "alice", f"Message {i + 1}", f"Answer {i + 1}"))
    older.click()
    expect(runs).to_have_count(28)
    expect(runs.nth(0)).to_contain_text("Message 1")
    expect(runs.nth(27)).to_contain_text("Message 28")
    expect(older).to_have_count(0)


def test_a_memory_whose_id_ends_in_history_is_edited_and_deleted(site: Site, page: Page) -> None:
    # its buttons reached the history of the memory "notes" (405 on a save or a delete,
    # and another memory's changes in its history)
    site.memory.add_user_memory(UserMemory("Keeps notes", memory_id="notes"), "alice")
    site.memory.add_user_memory(UserMemory("Reads history", memory_id="notes/history"), "alice")
    open_app(page, site.url)
    row(page, "Reads history").locator("[data-action=history]").click()
    events = page.locator("#history-dialog").get_by_test_id("history-event")
    expect(events).to_have_count(1)
    expect(events.nth(0).locator(".new-text")).to_have_text("Reads history")
    page.locator("#history-dialog [data-close]").click()

    row(page, "Reads history").locator("[data-action=edit]").click()
    page.get_by_test_id("edit-text").fill("Reads history books")
    page.locator("[data-action=save]").click()
    expect(row(page, "Reads history books")).to_have_count(1)
    assert site.texts("alice") == ["Reads history books", "Keeps notes"]

    row(page, "Reads history books").locator("[data-action=delete]").click()
    page.click("#confirm-ok")
    expect(page.get_by_test_id("notice")).to_have_text("Memory deleted")
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Keeps notes"])
    assert site.texts("alice") == ["Keeps notes"]


def test_the_memories_and_sessions_dot_and_dot_dot_are_reached(site: Site, page: Page) -> None:
    # a browser resolves "." and ".." away in a path (also sent as %2E): their buttons
    # reached /memories/ (the listing) and /, and their session could not be opened
    for memory_id, text in ((".", "Called dot"), ("..", "Named dot dot")):
        site.memory.add_user_memory(UserMemory(text, memory_id=memory_id), "alice")
    site.store.append_run(_run("..", "alice", "Up one level", "Here we are."))
    open_app(page, site.url)
    for text in ("Called dot", "Named dot dot"):
        row(page, text).locator("[data-action=history]").click()
        events = page.locator("#history-dialog").get_by_test_id("history-event")
        expect(events).to_have_count(1)
        expect(events.nth(0).locator(".new-text")).to_have_text(text)
        page.locator("#history-dialog [data-close]").click()
        row(page, text).locator("[data-action=edit]").click()
        page.get_by_test_id("edit-text").fill(f"{text}, edited")
        page.locator("[data-action=save]").click()
        expect(row(page, f"{text}, edited")).to_have_count(1)
    assert sorted(site.texts("alice")) == ["Called dot, edited", "Named dot dot, edited"]
    row(page, "Named dot dot, edited").locator("[data-action=delete]").click()
    page.click("#confirm-ok")
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Called dot, edited"])
    assert site.texts("alice") == ["Called dot, edited"]

    pick_user(page, "alice")
    page.click("#tab-sessions")
    page.get_by_test_id("session-item").click()
    expect(page.locator("#session-dialog").get_by_test_id("message")).to_have_count(2)
    expect(page.locator("#session-dialog")).to_contain_text("Here we are.")


def test_sign_in_with_the_api_key_or_a_user_token(tmp_path: Path, page: Page) -> None:
    store = SqliteDb(db_file=tmp_path / "page.db")
    memory = Memory(store)
    memory.add_user_memory(UserMemory("Alice likes jazz"), "alice")
    memory.add_user_memory(UserMemory("Alice speaks Portuguese"), "alice")
    memory.add_user_memory(UserMemory("Bob likes metal"), "bob")
    app = create_app(store, api_key=API_KEY, token_secret=TOKEN_SECRET)
    stored = "sessionStorage.getItem('noted.credential')"
    with live_server(app) as url:
        page.goto(url)
        form = page.get_by_test_id("sign-in")
        expect(form).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        expect(page.get_by_test_id("server-info")).to_contain_text("API key")
        shot(page, "sign-in-1280")
        page.fill("#credential", "not-the-key")
        page.click("#sign-in-submit")
        expect(page.get_by_test_id("sign-in-error")).to_have_text("invalid API key or token")

        page.fill("#credential", API_KEY)
        page.click("#sign-in-submit")
        expect(rows(page)).to_have_count(3)
        expect(page.get_by_test_id("signed-in-as")).to_have_text("Signed in with the API key")
        assert page.evaluate(stored) == API_KEY
        page.reload()  # the tab keeps its credential
        expect(rows(page)).to_have_count(3)
        page.click("#sign-out")
        expect(form).to_be_visible()
        assert page.evaluate(stored) is None

        page.fill("#credential", issue_token("alice", TOKEN_SECRET))
        page.click("#sign-in-submit")
        expect(rows(page)).to_have_count(2)
        assert row_attr(page, "userId") == ["alice", "alice"]
        expect(page.get_by_test_id("signed-in-as")).to_have_text("Signed in as alice")
        expect(page.get_by_test_id("user-all")).to_have_count(0)
        expect(page.locator("button.user-item")).to_have_count(0)  # no picker
        expect(page.locator("#find-user")).to_be_hidden()
        expect(user_item(page, "alice").get_by_test_id("user-count")).to_have_text("2 memories")
        expect(page.locator("#search")).to_be_enabled()
        page.click("#new-memory")
        expect(page.locator("#new-user")).to_be_hidden()
        page.fill("#new-text", "Alice plays the piano")
        page.click("#create-submit")
        expect(rows(page)).to_have_count(3)
        shot(page, "user-token-1280")
        assert memory.get_user_memories("alice")[0].memory == "Alice plays the piano"
        assert [m.memory for m in memory.get_user_memories("bob")] == ["Bob likes metal"]

        # a credential the server stops accepting sends the page back to the sign-in form
        page.evaluate("sessionStorage.setItem('noted.credential', 'revoked')")
        page.reload()
        expect(form).to_be_visible()
        expect(page.get_by_test_id("sign-in-error")).to_have_text("invalid API key or token")
    store.close()


def test_a_pasted_key_with_characters_no_key_has(tmp_path: Path, page: Page) -> None:
    """A key copied out of a document or a chat: an invisible zero-width space is dropped,
    typographic quotes are refused with a message that names them (nothing is sent), and
    "cannot reach the server" is kept for a request that was sent and got no answer."""
    store = SqliteDb(db_file=tmp_path / "page.db")
    Memory(store).add_user_memory(UserMemory("Alice likes tea"), "alice")
    record_fetches(page)
    with live_server(create_app(store, api_key=API_KEY, token_secret=TOKEN_SECRET)) as url:
        page.goto(url)
        error = page.get_by_test_id("sign-in-error")
        page.fill("#credential", f"\u201c{API_KEY}\u201d")
        page.click("#sign-in-submit")
        expect(error).to_have_text(
            "This is not a key or token as it was issued: it holds U+201C (\u201c), as text "
            "copied from a document or a chat can. Copy it again as plain text."
        )
        assert fetched(page, "/user_memory_stats") == []

        page.route("**/user_memory_stats?*", lambda route: route.abort("connectionrefused"))
        page.fill("#credential", API_KEY)
        page.click("#sign-in-submit")
        expect(error).to_have_text(
            "Cannot reach the noted server. Check that it is running and try again."
        )
        page.unroute("**/user_memory_stats?*")

        page.fill("#credential", f" {API_KEY[:10]}\u200b{API_KEY[10:]}\ufeff ")
        page.click("#sign-in-submit")
        expect(rows(page)).to_have_count(1)
        expect(page.get_by_test_id("signed-in-as")).to_have_text("Signed in with the API key")
        assert page.evaluate("sessionStorage.getItem('noted.credential')") == API_KEY

        # a credential kept by this tab before, with such a character, is not used
        page.evaluate("sessionStorage.setItem('noted.credential', '\u201cnope\u201d')")
        page.reload()
        expect(page.get_by_test_id("sign-in")).to_be_visible()
        expect(error).to_be_hidden()
        expect(page.get_by_test_id("error")).to_be_hidden()
    store.close()


def test_an_edit_survives_signing_in_again(tmp_path: Path, page: Page) -> None:
    """The token is revoked while a memory is being edited: the save sends the page to the
    sign-in form, and signing in again as the same user brings back the edit as typed."""
    store = SqliteDb(db_file=tmp_path / "page.db")
    memory = Memory(store)
    memory_id = memory.add_user_memory(UserMemory("Alice likes tea", topics=["drinks"]), "alice")
    memory.add_user_memories([UserMemory(f"Alice fact {i:02d}") for i in range(30)], "alice")
    app = create_app(store, api_key=API_KEY, token_secret=TOKEN_SECRET)
    with live_server(app) as url:
        page.goto(url)
        page.fill("#credential", issue_token("alice", TOKEN_SECRET))
        page.click("#sign-in-submit")
        expect(rows(page)).to_have_count(20)
        page.click("#next-page")  # the memory is on page 2
        row(page, "Alice likes tea").locator("[data-action=edit]").click()
        typed = "Alice likes green tea, no sugar, steeped three minutes"
        page.get_by_test_id("edit-text").fill(typed)
        page.get_by_test_id("edit-topics").fill("drinks, mornings")
        revoke_alice(url)
        page.locator("[data-action=save]").click()
        expect(page.get_by_test_id("sign-in-error")).to_have_text(
            "the token has been revoked: ask for a new one"
        )
        page.fill("#credential", issue_token("alice", TOKEN_SECRET))
        page.click("#sign-in-submit")
        expect(page.get_by_test_id("page-info")).to_have_text("Page 2 of 2 · 31 memories")
        expect(page.get_by_test_id("edit-text")).to_have_value(typed)
        expect(page.get_by_test_id("edit-topics")).to_have_value("drinks, mornings")
        page.locator("[data-action=save]").click()
        expect(page.get_by_test_id("notice")).to_have_text("Memory saved")
        page.click("#prev-page")  # the memory now comes first
        expect(row(page, "green tea").get_by_test_id("topic")).to_have_text(["drinks", "mornings"])
        stored = memory.get_user_memory(memory_id, "alice")
        assert stored is not None
        assert (stored.memory, stored.topics) == (typed, ["drinks", "mornings"])

        # signing in as someone else starts afresh
        row(page, "green tea").locator("[data-action=edit]").click()
        page.get_by_test_id("edit-text").fill("Not kept for another user")
        revoke_alice(url)
        page.locator("[data-action=save]").click()
        expect(page.get_by_test_id("sign-in")).to_be_visible()
        page.fill("#credential", API_KEY)
        page.click("#sign-in-submit")
        expect(page.get_by_test_id("user-all")).to_have_attribute("aria-pressed", "true")
        expect(page.get_by_test_id("page-info")).to_have_text("Page 1 of 2 · 31 memories")
        expect(page.get_by_test_id("edit-text")).to_have_count(0)
        assert memory.get_user_memory(memory_id, "alice") == stored
    store.close()


def revoke_alice(url: str) -> None:
    revoked = httpx.post(
        f"{url}/tokens/revocations",
        json={"user_id": "alice"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert revoked.status_code == 201, revoked.text


def test_user_text_is_shown_as_text(site: Site, page: Page) -> None:
    nasty = '<img src=x onerror=alert(1)> <script>alert(2)</script> & "quoted" café 🧠✨ 你好'
    memory_id = site.add(nasty, "alice", ["<b>bold</b>", "émoji 🎉"])
    site.store.append_run(
        _run("s1", "alice", "<svg onload=alert(3)>", "<img src=y onerror=alert(4)>")
    )
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_app(page, site.url)
    shown = row(page, "café")
    expect(shown.get_by_test_id("memory-text")).to_have_text(nasty)
    expect(shown.get_by_test_id("topic")).to_have_text(["<b>bold</b>", "émoji 🎉"])

    page.click("#new-memory")
    page.fill("#new-text", "<iframe src=javascript:alert(5)></iframe> 👋")
    page.fill("#new-user", "alice")
    page.click("#create-submit")
    expect(rows(page)).to_have_count(2)
    expect(row(page, "👋").get_by_test_id("memory-text")).to_have_text(
        "<iframe src=javascript:alert(5)></iframe> 👋"
    )
    shown.locator("[data-action=history]").click()
    expect(page.locator("#history-dialog .new-text")).to_have_text(nasty)
    page.keyboard.press("Escape")
    pick_user(page, "alice")
    page.click("#tab-sessions")
    page.get_by_test_id("session-item").click()
    expect(page.get_by_test_id("message").nth(1)).to_contain_text("<img src=y onerror=alert(4)>")

    injected = "body img, body script:not([src]), body iframe, body b, body svg:not(.icon)"
    assert page.locator(injected).count() == 0
    assert not [u for u in requests if u.endswith(("/x", "/y"))]
    assert site.memory.get_user_memory(memory_id, "alice") is not None


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_layout_fits_the_window(site: Site, page: Page, width: int, height: int) -> None:
    long_user = "someone.with.a.rather.long.address@example-company.example"
    site.add("Antidisestablishmentarianism" * 4, long_user, ["a-very-long-topic-name"] * 1)
    site.add(
        "Prefers short answers, metric units, and examples in Python rather than in prose",
        "alice",
        ["preferences", "style", "programming", "units"],
    )
    for i in range(6):
        site.add(f"Fact number {i} about a user", f"user-{i}", ["facts"])
    page.set_viewport_size({"width": width, "height": height})
    open_app(page, site.url)
    expect(rows(page)).to_have_count(8)
    no_overflow(page)
    for selector in ("#search", "#topic-filter", "#sort", "#new-memory", "#tab-sessions"):
        expect(page.locator(selector)).to_be_in_viewport()
    expect(rows(page).first).to_be_visible()
    expect(rows(page).first.locator("[data-action=delete]")).to_be_visible()
    expect(page.get_by_test_id("user-list")).to_be_visible()
    right = rows(page).evaluate_all(
        "rs => Math.max(...rs.map(r => r.getBoundingClientRect().right))"
    )
    assert right <= width
    shot(page, f"page-{width}")

    page.click("#new-memory")
    no_overflow(page)
    pick_user(page, "alice")
    row(page, "Prefers short answers").locator("[data-action=edit]").click()
    expect(page.get_by_test_id("edit-text")).to_be_in_viewport()
    no_overflow(page)
    shot(page, f"edit-{width}")
    page.get_by_test_id("edit-text").press("Escape")
    row(page, "Prefers short answers").locator("[data-action=delete]").click()
    expect(page.locator("#confirm-ok")).to_be_in_viewport()
    page.screenshot(path=SCREENSHOTS / f"confirm-delete-{width}.png")
    page.click("#confirm-cancel")
    no_overflow(page)


def test_pagination(site: Site, page: Page) -> None:
    ids = site.memory.add_user_memories(
        [UserMemory(f"Memory number {i:02d}") for i in range(45)], "alice"
    )
    open_app(page, site.url)
    texts = page.get_by_test_id("memory-text")
    info = page.get_by_test_id("page-info")

    def numbers(first: int, last: int) -> list[str]:
        return [f"Memory number {i:02d}" for i in range(first, last - 1, -1)]

    expect(texts).to_have_text(numbers(44, 25))
    expect(info).to_have_text("Page 1 of 3 · 45 memories")
    expect(page.locator("#prev-page")).to_be_disabled()
    page.click("#next-page")
    expect(texts).to_have_text(numbers(24, 5))
    expect(info).to_have_text("Page 2 of 3 · 45 memories")
    second = site.memory.get_user_memories("alice", limit=20, offset=20)
    assert row_attr(page, "memoryId") == [m.memory_id for m in second]
    page.click("#next-page")
    expect(texts).to_have_text(numbers(4, 0))
    expect(page.locator("#next-page")).to_be_disabled()
    page.click("#prev-page")
    expect(texts).to_have_text(numbers(24, 5))

    page.select_option("#sort", "created_at:asc")
    expect(texts.first).to_have_text("Memory number 00")
    expect(info).to_have_text("Page 1 of 3 · 45 memories")
    page.select_option("#page-size", "50")
    expect(texts).to_have_count(45)
    expect(info).to_have_text("Page 1 of 1 · 45 memories")

    site.memory.replace_user_memory(ids[10], UserMemory("Memory number 10, revised"), "alice")
    page.select_option("#sort", "updated_at:desc")
    expect(texts.first).to_have_text("Memory number 10, revised")
    page.select_option("#sort", "created_at:desc")
    expect(texts.first).to_have_text("Memory number 44")
    expect(texts.nth(34)).to_have_text("Memory number 10, revised")


def test_a_double_click_on_the_pager_moves_one_page(site: Site, page: Page) -> None:
    site.memory.add_user_memories([UserMemory(f"Memory {i:02d}") for i in range(45)], "alice")
    record_fetches(page)
    held = Held(page, "**/memories?*", lambda url: "page=1&" not in url)
    open_app(page, site.url)
    info = page.get_by_test_id("page-info")
    expect(info).to_have_text("Page 1 of 3 · 45 memories")
    page.dblclick("#next-page")  # the second click comes while page 2 is on its way
    assert [q["page"] for q in fetched(page, "/memories")] == [["1"], ["2"]]
    held.wait()
    held.release()
    expect(info).to_have_text("Page 2 of 3 · 45 memories")
    expect(rows(page).first.get_by_test_id("memory-text")).to_have_text("Memory 24")

    held.holding = lambda url: True
    page.dblclick("#prev-page")  # from page 2: page 1, never page 0
    assert [q["page"] for q in fetched(page, "/memories")] == [["1"], ["2"], ["1"]]
    held.wait()
    held.release()
    expect(info).to_have_text("Page 1 of 3 · 45 memories")
    expect(page.get_by_test_id("error")).to_be_hidden()
    expect(page.locator("#prev-page")).to_be_disabled()

    # a page that could not be read is asked for again by the next click
    held.holding = lambda url: False
    page.route(
        "**/memories?page=2&*", lambda route: route.fulfill(status=503, json={"detail": "down"})
    )
    page.click("#next-page")
    expect(page.locator("#error-text")).to_have_text("Could not load the memories: down")
    page.unroute("**/memories?page=2&*")
    page.click("#next-page")
    expect(info).to_have_text("Page 2 of 3 · 45 memories")


def test_find_a_user_among_hundreds_by_part_of_the_id(site: Site, page: Page) -> None:
    site.memory.import_user_memories(
        [UserMemory(f"Fact of user {n}", user_id=f"User{n:03d}") for n in range(300)]
    )
    open_app(page, site.url)
    users = page.get_by_test_id("user-item")
    expect(users).to_have_count(50)
    expect(page.locator("#users-total")).to_have_text("300 users")
    page.fill("#find-user", "user25")  # in any case
    expect(users).to_have_count(10)
    expect(page.locator("#users-total")).to_have_text("10 users found")
    ids = users.evaluate_all("els => els.map(e => e.dataset.userId)")
    assert sorted(ids) == [f"User{n}" for n in range(250, 260)]
    expect(page.get_by_test_id("user-all").get_by_test_id("user-count")).to_have_text("")
    pick_user(page, "User257")
    expect(rows(page)).to_have_count(1)
    expect(row(page, "Fact of user 257")).to_be_visible()

    page.fill("#find-user", "nobody")
    expect(page.get_by_test_id("user-none")).to_have_text("No user id holds “nobody”")
    expect(users).to_have_count(1)  # the picked user stays listed
    expect(page.locator("#users-total")).to_have_text("0 users found")
    page.fill("#find-user", "")
    expect(users).to_have_count(50)
    expect(page.locator("#users-total")).to_have_text("300 users")
    expect(page.get_by_test_id("user-none")).to_have_count(0)


def test_a_double_click_on_show_more_adds_the_next_page_once(site: Site, page: Page) -> None:
    site.memory.import_user_memories(
        [UserMemory(f"Fact of user {n}", user_id=f"user{n:03d}") for n in range(120)]
    )
    for n in range(45):
        site.store.append_run(_run(f"s{n:02d}", "user000", "hi", "hello"))
    record_fetches(page)
    held = Held(page, "**/*", lambda url: "page=2" in url)
    open_app(page, site.url)
    users = page.get_by_test_id("user-item")
    expect(users).to_have_count(50)
    page.dblclick("#more-users")
    assert [q["page"] for q in fetched(page, "/user_memory_stats")] == [["1"], ["2"]]
    held.wait()
    held.release()
    expect(users).to_have_count(100)
    ids = users.evaluate_all("els => els.map(e => e.dataset.userId)")
    assert ids == [s.user_id for s in site.memory.get_user_stats()][:100]

    page.click("#tab-sessions")
    sessions = page.get_by_test_id("session-item")
    expect(sessions).to_have_count(20)
    page.dblclick("#more-sessions")
    assert [q["page"] for q in fetched(page, "/sessions")] == [["1"], ["2"]]
    held.wait()
    held.release()
    expect(sessions).to_have_count(40)
    ids = sessions.evaluate_all("els => els.map(e => e.dataset.sessionId)")
    assert len(set(ids)) == 40


def test_a_late_answer_about_the_user_picked_before_is_dropped(site: Site, page: Page) -> None:
    """Alice is picked, then Bob before Alice's sessions and topics arrive: when they do,
    Bob's stay on screen."""
    site.add("Alice has a peanut allergy", "alice", ["health"])
    site.add("Bob plays golf", "bob", ["sport"])
    site.store.append_run(_run("s-alice", "alice", "About my diagnosis", "Noted."))
    site.store.append_run(_run("s-bob", "bob", "Tee times?", "8 am."))
    record_fetches(page)
    held = Held(
        page,
        "**/*",
        lambda url: (
            "user_id=alice" in url and urlsplit(url).path in ("/sessions", "/memory_topics")
        ),
    )
    open_app(page, site.url)
    page.click("#tab-sessions")
    sessions = page.get_by_test_id("session-item")
    expect(sessions).to_have_count(2)
    user_item(page, "alice").click()
    held.wait(2)
    pick_user(page, "bob")
    expect(sessions).to_have_count(1)
    expect(sessions).to_have_attribute("data-session-id", "s-bob")
    topics = page.locator("#topic-filter option")
    expect(topics).to_have_text(["All topics", "sport"])
    held.release()
    wait_answered(page, "/sessions", 3)  # everyone's, bob's and alice's late one
    wait_answered(page, "/memory_topics", 3)
    expect(sessions).to_have_attribute("data-session-id", "s-bob")
    expect(topics).to_have_text(["All topics", "sport"])
    expect(page.locator("#sessions-hint")).to_have_text("bob's conversations, most recent first.")


def test_a_late_answer_about_the_users_is_dropped(site: Site, page: Page) -> None:
    """Two writes in a row: the users' counts read after the first arrive after those
    read after the second, and do not replace them."""
    site.add("Alice likes tea", "alice")
    site.add("Alice likes jazz", "alice")
    record_fetches(page)
    held = Held(page, "**/user_memory_stats?*", lambda url: False)
    open_app(page, site.url)
    count = user_item(page, "alice").get_by_test_id("user-count")
    expect(count).to_have_text("2 memories")
    held.holding = lambda url: True
    page.click("#new-memory")
    page.fill("#new-text", "Alice likes chess")
    page.fill("#new-user", "alice")
    page.click("#create-submit")
    held.wait()  # the server's answer says 3 memories; it is on its way
    held.holding = lambda url: False
    row(page, "Alice likes tea").locator("[data-action=delete]").click()
    page.click("#confirm-ok")
    wait_answered(page, "/user_memory_stats", 2)  # the first, and the one after the delete
    expect(count).to_have_text("2 memories")
    held.release()
    wait_answered(page, "/user_memory_stats", 3)
    expect(count).to_have_text("2 memories")
    assert sorted(site.texts("alice")) == ["Alice likes chess", "Alice likes jazz"]


def test_a_hybrid_search_pages_through_what_it_found(tmp_path: Path, page: Page) -> None:
    """Memories stored before the server had an embedder are found by their words only:
    the pager ends with the last match, and Next past it asks for nothing more."""
    store = SqliteDb(db_file=tmp_path / "page.db")
    Memory(store).add_user_memories(
        [UserMemory(f"Note {i} about skiing") for i in range(25)]
        + [UserMemory(f"Note {i} about cooking") for i in range(25, 60)],
        "alice",
    )
    memory = Memory(store, embedder=WordsEmbedder())
    assert memory.index is not None
    memory.index.embed_on_search = 0  # more waiting than a search embeds: none are
    searches: list[str] = []
    page.on("request", lambda r: searches.append(r.url) if "search_content" in r.url else None)
    with live_server(create_app(memory=memory)) as url:
        open_app(page, url)
        pick_user(page, "alice")
        page.fill("#search", "skiing")
        info = page.get_by_test_id("page-info")
        expect(info).to_have_text("Page 1 of 3 · 60 matches")  # every memory may match
        expect(rows(page)).to_have_count(20)
        page.click("#next-page")
        expect(info).to_have_text("Page 2 of 2 · 25 matches")
        expect(rows(page)).to_have_count(5)
        expect(page.locator("#next-page")).to_be_disabled()
        assert sum("page=2" in u for u in searches) == 1
    store.close()


def test_an_empty_page_the_server_still_counts_is_shown_empty(site: Site, page: Page) -> None:
    """A page past the results that the server still counts (it says there are 5 pages
    but page 2 is empty) is drawn empty: the page does not ask for another page forever."""
    site.memory.add_user_memories([UserMemory(f"Memory {i}") for i in range(25)], "alice")
    asked: list[str] = []

    def counted_but_empty(route: Route) -> None:
        query = parse_qs(urlsplit(route.request.url).query)
        asked.append(query["page"][0])
        if query["page"] == ["1"]:
            route.continue_()
            return
        meta = {"page": int(query["page"][0]), "limit": 20, "total_pages": 5, "total_count": 100}
        route.fulfill(json={"data": [], "meta": meta})

    page.route("**/memories?*", counted_but_empty)
    open_app(page, site.url)
    expect(rows(page)).to_have_count(20)
    page.click("#next-page")
    expect(page.get_by_test_id("page-info")).to_have_text("Page 2 of 5 · 100 memories")
    expect(page.get_by_test_id("empty")).to_be_visible()
    expect(page.locator("#memories")).not_to_have_attribute("aria-busy", "true")
    assert asked == ["1", "2"]

    # a page past the last one the server counts moves to that last page, once
    asked.clear()
    page.unroute("**/memories?*")
    site.memory.delete_user_memories(
        [m.memory_id for m in site.memory.get_user_memories("alice")[:5] if m.memory_id],
        "alice",
    )

    def counted(route: Route) -> None:
        asked.append(parse_qs(urlsplit(route.request.url).query)["page"][0])
        route.continue_()

    page.route("**/memories?*", counted)
    page.click("#next-page")  # page 3: the server now counts 1 page of 20
    expect(page.get_by_test_id("page-info")).to_have_text("Page 1 of 1 · 20 memories")
    expect(rows(page)).to_have_count(20)
    assert asked == ["3", "1"]


def test_the_page_lists_memories_as_its_documentation_says(site: Site, page: Page) -> None:
    """docs/server.md says in what order the page lists memories: the order it uses."""
    first = site.add("Written first", "alice")
    site.add("Written second", "alice")
    site.memory.edit_user_memory(first, "alice", memory="Written first, changed last")
    open_app(page, site.url)
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(
        ["Written first, changed last", "Written second"]
    )
    expect(page.locator("#sort option:checked")).to_have_text("Recently updated")
    docs = (Path(__file__).resolve().parent.parent / "docs" / "server.md").read_text()
    section = " ".join(docs.split("## The Memories page")[1].split("\n## ")[0].split())
    assert "memories (text, topics, user, last update), the most recently updated first" in section
    assert "newest first" not in section


def test_an_edit_of_a_memory_deleted_elsewhere_is_kept(site: Site, page: Page) -> None:
    """Another tab deletes the memory while this one edits it: the save says so, and what
    was typed waits in the New memory form, for the same user, to be saved again."""
    memory_id = site.add("Short-lived", "alice", ["tests"])
    site.add("Bob stays", "bob")
    open_app(page, site.url)
    row(page, "Short-lived").locator("[data-action=edit]").click()
    page.get_by_test_id("edit-text").fill("Changed behind its back")
    page.get_by_test_id("edit-topics").fill("tests, races")
    assert site.memory.delete_user_memory(memory_id, "alice")
    page.get_by_test_id("edit-topics").press("Enter")
    error = page.locator("#error-text")
    expect(error).to_have_text(
        "This memory was deleted elsewhere after you began editing it. What you typed is "
        "in the New memory form: save it to keep it, or cancel."
    )
    expect(rows(page).get_by_test_id("memory-text")).to_have_text(["Bob stays"])  # caught up
    expect(page.get_by_test_id("edit-text")).to_have_count(0)
    expect(page.locator("#create-form")).to_be_visible()
    expect(page.locator("#new-text")).to_be_focused()
    expect(page.locator("#new-text")).to_have_value("Changed behind its back")
    expect(page.locator("#new-topics")).to_have_value("tests, races")
    expect(page.locator("#new-user")).to_have_value("alice")
    shot(page, "error-1280")
    assert site.memory.get_user_memory(memory_id, "alice") is None
    page.click("#create-submit")
    expect(page.get_by_test_id("notice")).to_have_text("Saved a memory for alice")
    expect(error).to_be_hidden()
    stored = site.memory.get_user_memories("alice")
    assert [(m.memory, m.topics) for m in stored] == [
        ("Changed behind its back", ["tests", "races"])
    ]


def test_the_page_runs_under_its_content_security_policy(site: Site, browser: Browser) -> None:
    """The page works with its strict policy (every other test here fails on a violation,
    which Chromium reports as a console error), and the policy stops injected script."""
    context = browser.new_context()
    tab = context.new_page()
    refused: list[str] = []
    tab.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    try:
        answer = tab.goto(site.url)
        assert answer is not None
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
        expect(tab.locator("#app")).to_be_visible()
        tab.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.injected = true";
                document.body.append(script);
                document.body.insertAdjacentHTML(
                    "beforeend", '<img src="data:," onload="window.injected = true">');
            }"""
        )
        tab.wait_for_timeout(200)
        assert tab.evaluate("window.injected") is None
        assert any("Content Security Policy" in text for text in refused), refused
    finally:
        context.close()


def test_api_docs_render_offline(site: Site, page: Page) -> None:
    """/docs draws Swagger UI from files the server itself serves: with every request that
    would leave 127.0.0.1 cut off, the operations show and one can be tried."""
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1:).*"),
        lambda route: route.abort("internetdisconnected"),
    )
    page.goto(f"{site.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("noted")
    health = page.locator(".opblock-summary", has_text="/health")
    expect(health).to_be_visible()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/memories" in [p.replace("\u200b", "") for p in paths]
    health.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
    expect(page.locator(".live-responses-table .microlight").first).to_contain_text('"ok"')
    shot(page, "api-docs-1280")


def test_the_keyboard_stays_on_the_row_after_an_edit_or_a_delete(site: Site, page: Page) -> None:
    """Escape, Ctrl+Enter and a confirmed delete each redraw the table: the keyboard lands
    on the row's Edit button, on the next row, or on the panel, never on the page's body."""
    site.add("Has a cat named Miso", "alice")
    site.add("Dislikes cilantro", "alice")
    site.add("Lives in Lisbon", "alice")
    open_app(page, site.url)
    edit = row(page, "Lives in Lisbon").locator("[data-action=edit]")
    edit.focus()
    page.keyboard.press("Enter")
    text = page.get_by_test_id("edit-text")
    expect(text).to_be_focused()
    page.keyboard.press("Escape")
    expect(text).to_have_count(0)
    expect(edit).to_be_focused()

    page.keyboard.press("Enter")
    page.keyboard.press("End")
    page.keyboard.type(" since 2019")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("notice")).to_have_text("Memory saved")
    saved = row(page, "Lives in Lisbon since 2019")
    expect(saved.locator("[data-action=edit]")).to_be_focused()

    # a save refused (changed in another tab) redraws the row: the caret stays where it was
    memory_id = saved.get_attribute("data-memory-id")
    assert memory_id is not None
    page.keyboard.press("Enter")
    page.keyboard.press("End")
    page.keyboard.type(", Alfama")
    site.memory.edit_user_memory(memory_id, "alice", memory="Lives in Porto")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("error")).to_contain_text("changed elsewhere")
    expect(text).to_be_focused()
    page.keyboard.type("!")
    expect(text).to_have_value("Lives in Lisbon since 2019, Alfama!")
    page.keyboard.press("Escape")

    row(page, "Lives in Porto").locator("[data-action=delete]").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-cancel")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("notice")).to_have_text("Memory deleted")
    expect(rows(page)).to_have_count(2)
    expect(rows(page).first.locator("[data-action=delete]")).to_be_focused()  # the next one

    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(rows(page)).to_have_count(1)
    expect(row(page, "Has a cat").locator("[data-action=delete]")).to_be_focused()
    _confirm_the_last_delete(site, page)


def _confirm_the_last_delete(site: Site, page: Page) -> None:
    """Delete by keyboard (Enter on the focused delete, Tab to the dialog's Delete, Enter)
    Alice's last memory: the keyboard lands on the emptied memories panel."""
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("empty")).to_be_visible()
    expect(page.locator("#memories-view")).to_be_focused()
    assert site.texts("alice") == []


def test_the_keyboard_leaves_the_selection_bar_for_the_table(site: Site, page: Page) -> None:
    site.add("Alice one", "alice")
    site.add("Alice two", "alice")
    site.add("Alice three", "alice")
    open_app(page, site.url)
    row(page, "Alice one").locator("[data-action=select]").check()
    page.locator("#bulk-clear").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("bulk-bar")).to_be_hidden()
    expect(page.locator("#select-all")).to_be_focused()
    page.keyboard.press("Space")
    page.locator("#bulk-delete").focus()
    _confirm_the_last_delete(site, page)


def rtl(locator: Locator) -> list[bool]:
    """Whether each element reads right to left (its own text sets its direction)."""
    return locator.evaluate_all("els => els.map(e => e.matches(':dir(rtl)'))")


def test_right_to_left_text_reads_right_to_left(site: Site, page: Page) -> None:
    """Hebrew and Arabic memories, topics and users are laid out right to left, their
    punctuation at their end (the left), beside left-to-right ones; as they are typed too."""
    site.add("Prefers tea!", "alice", ["drinks"])
    memory_id = site.add("שלום עולם! 👋", "דנה", ["עברית", "food"])
    site.memory.edit_user_memory(memory_id, "דנה", memory="مرحبا بالعالم! 👋")
    open_app(page, site.url)
    expect(rows(page)).to_have_count(2)
    assert rtl(rows(page).get_by_test_id("memory-text")) == [True, False]
    assert rtl(rows(page).first.get_by_test_id("topic")) == [True, False]
    assert rtl(rows(page).get_by_test_id("memory-user")) == [True, False]
    assert rtl(page.locator(".user-name")) == [False, True, False]  # All users, דנה, alice
    text = rows(page).first.get_by_test_id("memory-text")
    bang_left_of_text = text.evaluate(
        """p => {
            const at = (i) => {
                const range = document.createRange();
                range.setStart(p.firstChild, i);
                range.setEnd(p.firstChild, i + 1);
                return range.getBoundingClientRect().left;
            };
            return at(p.firstChild.data.indexOf("!")) < at(0);
        }"""
    )
    assert bang_left_of_text, "the ! ends the sentence: on its left, not on its right"

    rows(page).first.locator("[data-action=edit]").click()
    expect(page.get_by_test_id("edit-text")).to_be_visible()
    assert rtl(page.get_by_test_id("edit-text")) == [True]
    assert rtl(page.get_by_test_id("edit-topics")) == [True]
    page.get_by_test_id("edit-text").press("Escape")
    rows(page).first.locator("[data-action=history]").click()
    texts = page.locator("#history-dialog .new-text, #history-dialog .old-text")
    expect(texts).to_have_count(3)  # once the history is read
    assert rtl(texts) == [
        True,
        True,
        True,
    ]
    page.keyboard.press("Escape")
    rows(page).first.locator("[data-action=delete]").click()
    expect(page.locator("#confirm-quote")).to_be_visible()
    assert rtl(page.locator("#confirm-quote")) == [True]
    page.click("#confirm-cancel")
    page.click("#new-memory")
    page.fill("#new-text", "יום הולדת ב-3 במאי!")
    page.fill("#new-topics", "משפחה")
    assert rtl(page.locator("#new-text, #new-topics, #new-user")) == [True, True, False]


def test_the_new_memory_form_by_keyboard(site: Site, page: Page) -> None:
    """Escape cancels the New memory form and Ctrl+Enter in its text saves, as in a row's
    edit; the keyboard comes back to the New memory button either way."""
    open_app(page, site.url)
    page.locator("#new-memory").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#new-text")).to_be_focused()
    page.keyboard.type("Never meant to be kept")
    page.keyboard.press("Escape")
    expect(page.locator("#create-form")).to_be_hidden()
    expect(page.locator("#new-memory")).to_be_focused()
    expect(page.locator("#new-memory")).to_have_attribute("aria-expanded", "false")

    page.keyboard.press("Enter")
    expect(page.locator("#new-text")).to_have_value("")
    page.keyboard.type("Takes the train to work")
    page.keyboard.press("Tab")
    page.keyboard.type("travel, work")
    page.keyboard.press("Tab")
    page.keyboard.type("alice")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("notice")).to_have_text("Saved a memory for alice")
    expect(page.locator("#create-form")).to_be_hidden()
    expect(page.locator("#new-memory")).to_be_focused()
    stored = site.memory.get_user_memories("alice")
    assert [(m.memory, m.topics) for m in stored] == [
        ("Takes the train to work", ["travel", "work"])
    ]


def test_each_rows_buttons_name_the_memory_they_act_on(site: Site, page: Page) -> None:
    """A screen reader lists buttons by name: each row's Edit, Show history and Delete say
    which memory (its text, clipped), not the same three names on every row."""
    site.add("Likes green tea", "ava", ["food"])
    site.add("Rows on Sundays", "ava", ["sport"])
    open_app(page, site.url)
    expect(rows(page)).to_have_count(2)
    for text in ("Likes green tea", "Rows on Sundays"):
        for label, action in (
            ("Edit memory", "edit"),
            ("Show history", "history"),
            ("Delete memory", "delete"),
        ):
            named = page.get_by_role("button", name=f"{label}: “{text}”", exact=True)
            expect(named).to_have_count(1)
            expect(named).to_have_attribute("data-action", action)
            expect(named).to_have_attribute("title", label)
    page.get_by_role("button", name="Delete memory: “Rows on Sundays”", exact=True).click()
    expect(page.locator("#confirm-quote")).to_contain_text("Rows on Sundays")
