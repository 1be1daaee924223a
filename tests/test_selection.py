"""The memories an agent's prompt, the memory manager and agentic search are shown come
from a search over all of the user's memories, on every store: an old fact is found after
thousands of newer ones, by its words without an embedder and by its meaning with the
default one; an agent can be scoped to its own memories."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from noted import Agent, Memory, MemoryStore, Message, SqliteDb, UserMemory
from noted.agent.context import fit_memories
from noted.db.base import MemoryQuery
from noted.memory import selection
from noted.memory.selection import distinct, estimate_tokens, select_memories
from noted.models import ToolDefinition
from noted.testing import FunctionModel
from user_facts import user_facts

ALLERGY = "The user is allergic to shellfish"


@pytest.fixture
def unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allergies not kept in view: what the search alone finds."""
    monkeypatch.setattr(selection, "PINNED_CONSTRAINTS", 0)


def prompt_catcher() -> tuple[FunctionModel, list[str]]:
    prompts: list[str] = []

    def answer(messages: list[Message], tools: list[ToolDefinition]) -> str:
        prompts.append(messages[0].content or "" if messages[0].role == "system" else "")
        return "Noted."

    return FunctionModel(answer), prompts


def test_the_generated_facts_are_varied_and_never_about_shellfish() -> None:
    facts = user_facts(1500)
    texts = [f.memory for f in facts]
    assert len(set(texts)) == 1500
    assert len({t.split()[2] for t in texts}) >= 10  # many kinds of sentence
    assert not [t for t in texts if re.search(r"shellfish|prawn|shrimp|seafood", t, re.I)]


def test_an_old_fact_reaches_the_prompt_by_its_words_among_1500_newer(
    store: MemoryStore, unpinned: None
) -> None:
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(UserMemory(ALLERGY, topics=["health"]), "ava")
    memory.add_user_memories(user_facts(1500), "ava")
    model, prompts = prompt_catcher()
    agent = Agent(model, memory=memory, user_id="ava", add_memories_to_context=True)
    agent.run("Can I eat shellfish?")
    assert ALLERGY in prompts[0]
    assert len(prompts[0]) < 6000  # the budget, not every memory
    # no shared word (and a new session, so no earlier turn): the newest still show
    agent.run("What's the weather like?", session_id="another")
    assert ALLERGY not in prompts[1]
    assert "memories_from_previous_interactions" in prompts[1]


@pytest.fixture(scope="module")
def ava_embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the allergy and 1,500 newer facts, embedded by the local model."""
    path = tmp_path_factory.mktemp("prawn") / "ava.db"
    with SqliteDb(path) as db:
        memory = Memory(db=db, embedder="local", embed_on_write=False)
        memory.add_user_memory(UserMemory(ALLERGY, topics=["health"]), "ava")
        memory.add_user_memories(user_facts(1500), "ava")
        assert memory.reindex_user_memories("ava") == 1501
    return path


def ask_by_default(path: Path, question: str) -> str:
    with SqliteDb(path) as db:
        memory = Memory(db=db)  # the default: the local embedder
        assert memory.index is not None and not memory.index.embed_on_write
        model, prompts = prompt_catcher()
        Agent(model, memory=memory, user_id="ava", add_memories_to_context=True).run(question)
        keyword_model, keyword_prompts = prompt_catcher()
        keyword_memory = Memory(db=db, embedder=None)
        keyword = Agent(keyword_model, memory=keyword_memory, add_memories_to_context=True)
        keyword.run(question, user_id="ava")
    assert ALLERGY not in keyword_prompts[0]  # no shared word: only meaning finds it
    return prompts[0]


@pytest.mark.default_embedder
def test_a_question_about_prawns_finds_the_shellfish_allergy_by_meaning(
    ava_embedded: Path, unpinned: None
) -> None:
    assert ALLERGY in ask_by_default(ava_embedded, "Can I eat prawns?")


@pytest.mark.default_embedder
@pytest.mark.xfail(
    strict=True,
    reason="all-MiniLM-L6-v2 (int8) ranks the allergy 377th of 1,501 for this question, below "
    "every curry and food fact; a stronger embedded model is needed",
)
def test_the_prawn_curry_question_finds_the_shellfish_allergy_by_meaning(
    ava_embedded: Path, unpinned: None
) -> None:
    assert ALLERGY in ask_by_default(ava_embedded, "Can I order the prawn curry tonight?")


@pytest.mark.default_embedder
def test_the_prawn_curry_question_shows_the_shellfish_allergy_by_default(
    ava_embedded: Path,
) -> None:
    """Allergies are kept in view whatever is asked, so the curry question has the allergy
    in its prompt although the small model ranks it far down."""
    with SqliteDb(ava_embedded) as db:
        for memory in (Memory(db=db), Memory(db=db, embedder=None)):
            model, prompts = prompt_catcher()
            agent = Agent(model, memory=memory, user_id="ava", add_memories_to_context=True)
            agent.run("Can I order the prawn curry tonight?")
            assert ALLERGY in prompts[0]


def test_allergies_and_intolerances_stay_in_view_whatever_is_asked(store: MemoryStore) -> None:
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(UserMemory("The user's name is Ava"), "ava")
    constraints = [
        "Ava is allergic to peanuts",
        "The user has a penicillin allergy",
        "Ava is lactose intolerant",
        "The user has coeliac disease",
        "Ava carries an EpiPen for anaphylaxis",
    ]
    memory.add_user_memories([UserMemory(text) for text in constraints], "ava")
    memory.add_user_memories(user_facts(1500), "ava")
    memory.add_user_memory(UserMemory("Ava's sister is allergic to cats", agent_id="vet"), "ava")
    memory.add_user_memory(UserMemory("Bob is allergic to bees"), "bob")
    query = MemoryQuery(user_id="ava")
    texts = [m.memory for m in select_memories(store, query, "What's the weather like?", 20)]
    pinned = texts[: 1 + selection.PINNED_CONSTRAINTS]
    assert pinned[0] == "The user's name is Ava"
    assert len(set(pinned[1:]) & {*constraints, "Ava's sister is allergic to cats"}) == 3
    assert sum(t in constraints for t in texts) == 3  # the cap: the search found no more
    assert "Bob" not in " ".join(texts)
    scoped = select_memories(store, query, "What's the weather like?", 20, agent_id="chef")
    assert "Ava's sister is allergic to cats" not in [m.memory for m in scoped]
    # the search still ranks them where a question bears on them
    asked = select_memories(store, query, "Is there lactose in this?", 20, pinned=False)
    assert asked[0].memory == "Ava is lactose intolerant"
    unpinned = select_memories(store, query, "What's the weather like?", 20, pinned=False)
    assert not {m.memory for m in unpinned} & set(constraints)


def test_only_a_memory_of_the_users_own_name_is_kept_in_view(
    store: MemoryStore, unpinned: None
) -> None:
    """(With the allergies' pins off, the name is the one fact pinned.)"""
    memory = Memory(db=store, embedder=None)
    others = """Ava joined a hiking club called Summit Seekers
        Ava has a dog named Luna
        Her cat's name is Oliver
        The user's company name is Northwind
        Sam offers to be called if anyone needs a ride""".splitlines()
    memory.add_user_memories([UserMemory(text.strip()) for text in others], "ava")
    memory.add_user_memories(user_facts(300), "ava")
    query = MemoryQuery(user_id="ava")
    question = "What's the weather like?"
    pinned = [m.memory for m in select_memories(store, query, question, 20)]
    assert pinned == [m.memory for m in select_memories(store, query, question, 20, pinned=False)]
    memory.add_user_memory(UserMemory("The user goes by Av"), "ava")
    assert select_memories(store, query, question, 20)[0].memory == "The user goes by Av"


def test_facts_kept_in_view_are_found_by_their_text_not_by_what_was_said(
    store: MemoryStore,
) -> None:
    """Memories keep the conversation they came from (``input``), which keyword search
    reads too: talk full of the pinned searches' words (a friend's allergies, someone's
    nickname) must not crowd out the memories whose own text says them."""
    memory = Memory(db=store, embedder=None)
    chatter = (
        "My friend Mia is allergic to cats, her allergy is bad; her name is Maria but she "
        "goes by Mia, her brother is called Tom, named after our grandfather, and he is "
        "lactose intolerant. Anaphylaxis scares them; their cousin has coeliac disease."
    )
    facts = user_facts(300)
    for fact in facts:
        fact.input = chatter
    memory.add_user_memories(facts[:150], "ava")
    memory.add_user_memory(UserMemory("The user's name is Ava", input="I'm Ava."), "ava")
    constraints = ["Ava is allergic to peanuts", "Ava is lactose intolerant"]
    for text in constraints:
        memory.add_user_memory(UserMemory(text, input="By the way, " + text), "ava")
    memory.add_user_memories(facts[150:], "ava")
    query = MemoryQuery(user_id="ava")
    texts = [m.memory for m in select_memories(store, query, "What's the weather like?", 20)]
    assert texts[0] == "The user's name is Ava"
    assert set(texts[1:3]) == set(constraints)


@pytest.mark.parametrize("learned", ["session", "label"])
def test_a_fact_learned_beside_the_best_match_is_lifted(store: MemoryStore, learned: str) -> None:
    """What was learned in the best match's conversation (its session; for memories with
    none, the label their text starts with) comes before better matches from elsewhere:
    the airport pick-up shares one word with the question, as a dozen other flights do."""

    def fact(text: str, where: str) -> UserMemory:
        if learned == "session":
            return UserMemory(text, session_id=where)
        return UserMemory(f"[{where}] {text}")

    trip = [
        fact("The Lisbon flight leaves on 12 May", "2024-05-02"),
        fact("The user booked the Lisbon flight in March", "2024-05-02"),
        fact("Rita will pick the user up at the airport after the flight", "2024-05-02"),
    ]
    others = [fact(f"Flight {i} to Oslo was booked", f"2023-0{i % 9 + 1}-1{i}") for i in range(12)]
    Memory(db=store, embedder=None).add_user_memories([*trip, *others], "ava")
    query = MemoryQuery(user_id="ava", limit=60)
    chosen = select_memories(store, query, "When does the Lisbon flight leave?", 3, pinned=False)
    assert {m.memory for m in chosen} == {m.memory for m in trip}
    assert len({selection.episode(m) for m in chosen}) == 1


def test_a_session_that_holds_most_of_what_is_found_lifts_nothing(store: MemoryStore) -> None:
    """An agent kept on one session writes every memory there: lifting that session would
    put all of it before what was learned elsewhere (here, a memory added by hand)."""
    kept = "main"
    best = UserMemory("The Lisbon flight leaves on 12 May", session_id=kept)
    by_hand = UserMemory("The user hates flight delays")
    offsite = [
        UserMemory(f"Flight {i} to Oslo was booked for the team offsite", session_id=kept)
        for i in range(20)
    ]
    Memory(db=store, embedder=None).add_user_memories([best, by_hand, *offsite], "ava")
    query = MemoryQuery(user_id="ava", limit=60)
    chosen = select_memories(store, query, "When does the Lisbon flight leave?", 3, pinned=False)
    assert [m.memory for m in chosen[:2]] == [best.memory, by_hand.memory]


def _mondays(store: MemoryStore) -> tuple[UserMemory, list[UserMemory], MemoryQuery]:
    """Ava's memory full of function words, twenty newer ones, and the query of her."""
    wordy = UserMemory("It is what it is, the user says of Mondays")
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(wordy, "ava")
    newer = user_facts(20)
    memory.add_user_memories(newer, "ava")
    return wordy, newer, MemoryQuery(user_id="ava", limit=60)


def test_a_message_of_function_words_alone_matches_no_memory_by_them(
    store: MemoryStore,
) -> None:
    """ "What is it?" shares only function words with a memory: that makes the memory no
    more relevant than any other, so the newest are shown, not the one full of "it"."""
    wordy, newer, query = _mondays(store)
    chosen = select_memories(store, query, "What is it?", 3, pinned=False)
    assert wordy.memory not in [m.memory for m in chosen]
    assert len(chosen) == 3 and {m.memory for m in chosen} <= {m.memory for m in newer}
    # a word of its own finds it, and an explicit search by the words still does
    about = select_memories(store, query, "What is it about Mondays?", 3, pinned=False)
    assert about[0].memory == wordy.memory
    assert [r.memory.memory for r in store.keyword_search(query, "what is it")][:1] == [
        wordy.memory
    ]
    # by meaning, the words' side searches nothing and the search by meaning goes on
    index = Memory(db=store).index
    chosen = select_memories(store, query, "What is it?", 3, index=index, pinned=False)
    assert len(chosen) == 3


@pytest.mark.parametrize(
    "message", ["What's it?", "Don't you?", "Isn't it?", "And you're?", "Can't we?", "I'd?"]
)
def test_a_message_of_contracted_function_words_matches_no_memory_by_them(
    store: MemoryStore, message: str
) -> None:
    """ "What's it?" is "what is it?": the pieces a contraction leaves ("s", "t", "don",
    "re") are function words too, and a memory full of possessives and contractions is
    no more relevant to it than the newest."""
    wordy = UserMemory(
        "User's sister doesn't like what's sold; they're sure it isn't, can't be, I'd say"
    )
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(wordy, "ava")
    newer = [m for m in user_facts(40) if "'" not in m.memory][:20]
    memory.add_user_memories(newer, "ava")
    query = MemoryQuery(user_id="ava", limit=60)
    chosen = select_memories(store, query, message, 3, pinned=False)
    assert wordy.memory not in [m.memory for m in chosen]
    # a word of its own still finds it, a possessive's owner among them
    found = select_memories(store, query, "What's my sister's?", 1, pinned=False)
    assert [m.memory for m in found] == [wordy.memory]


def test_recent_turns_of_function_words_alone_match_no_memory_by_them(
    store: MemoryStore,
) -> None:
    """The session's recent turns are searched by their words only when they have some
    of their own, as the message is: "Is it?" answered "It is." puts no memory holding
    "it" and "is" ahead of the newest."""
    wordy, newer, query = _mondays(store)
    turns = selection.RecentTurns("Is it?", "It is.")
    chosen = select_memories(store, query, "Why?", 3, pinned=False, turns=turns)
    assert len(chosen) == 3 and {m.memory for m in chosen} <= {m.memory for m in newer}
    turns = selection.RecentTurns("Is it Monday?", "It is.")
    chosen = select_memories(store, query, "Why?", 3, pinned=False, turns=turns)
    assert chosen[0].memory == wordy.memory


def test_a_memorys_episode_is_its_session_else_its_label() -> None:
    assert selection.episode(UserMemory("[work] x", session_id="s1")) == ("session", "s1")
    assert selection.episode(UserMemory("[work]  Ava leads the team")) == ("label", "[work]")
    assert selection.episode(UserMemory("Ava leads the team [work]")) is None


def test_the_manager_updates_an_old_fact_after_thousands_of_newer_ones(
    store: MemoryStore,
) -> None:
    memory = Memory(db=store, embedder=None)
    old = memory.add_user_memory(
        UserMemory("The user's home is in San Francisco", topics=["home"]), "ava"
    )
    memory.add_user_memories(user_facts(3000, seed=11), "ava")
    shown: list[str] = []

    def manager(messages: list[Message], tools: list[ToolDefinition]) -> str:
        listed = messages[1].content or ""
        shown.append(listed)
        number = next(
            int(n) for n, text in re.findall(r"^(\d+)\. (.*)$", listed, re.M) if "San Fran" in text
        )
        return json.dumps(
            {
                "operations": [
                    {
                        "op": "update",
                        "id": number,
                        "memory": "The user lives in Seattle",
                        "topics": ["home"],
                    }
                ]
            }
        )

    memory.model = FunctionModel(manager)
    update = memory.create_user_memories("I moved to Seattle, my home is there now", user_id="ava")
    assert update.memory_ids == [old]
    assert memory.get_user_memory(old, "ava").memory == "The user lives in Seattle"  # type: ignore[union-attr]
    assert memory.count_user_memories("ava") == 3001  # updated, not a second home


def test_agentic_search_candidates_come_from_all_memories_without_an_embedder(
    store: MemoryStore, unpinned: None
) -> None:
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(UserMemory(ALLERGY), "ava")
    memory.add_user_memories(user_facts(1500), "ava")
    listed: list[str] = []

    def chooser(messages: list[Message], tools: list[ToolDefinition]) -> str:
        listed.append(messages[1].content or "")
        return '{"ids": [1]}'

    memory.model = FunctionModel(chooser)
    memory.search_user_memories("shellfish allergy", "ava", retrieval_method="agentic")
    assert ALLERGY in listed[0]
    assert listed[0].count("\n") <= 110  # a bounded list


def test_an_agent_scoped_to_itself_sees_its_memories_and_those_of_no_agent(
    store: MemoryStore,
) -> None:
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(UserMemory("The user likes spicy food", agent_id="chef"), "ava")
    memory.add_user_memory(UserMemory("The user runs on Sunday mornings", agent_id="coach"), "ava")
    memory.add_user_memory(UserMemory("The user's name is Ava"), "ava")
    # many of another agent's memories on the subject cannot crowd the chef's out
    memory.add_user_memories(
        [UserMemory(f"The user ate spicy food at race {i}", agent_id="coach") for i in range(300)],
        "ava",
    )
    model, prompts = prompt_catcher()
    question = "What spicy food do I like, and when do I run?"
    scoped = Agent(
        model,
        agent_id="chef",
        memory=memory,
        user_id="ava",
        add_memories_to_context=True,
        memory_scope="agent",
    )
    scoped.run(question)
    assert "The user likes spicy food" in prompts[0]
    assert "The user's name is Ava" in prompts[0]
    assert "coach" not in prompts[0] and "race" not in prompts[0] and "Sunday" not in prompts[0]
    everyone = Agent(
        model, agent_id="chef", memory=memory, user_id="ava", add_memories_to_context=True
    )  # the default: all the user's memories
    everyone.run("When do I go for a run?")
    assert "The user runs on Sunday mornings" in prompts[1]
    # another user's memories are never among them
    memory.add_user_memory(UserMemory("Bob likes spicy food", agent_id="chef"), "bob")
    scoped.run(question)
    assert "Bob" not in prompts[2]


def test_memory_scope_is_checked() -> None:
    model, _ = prompt_catcher()
    with pytest.raises(ValueError, match="memory_scope"):
        Agent(model, agent_id="chef", add_memories_to_context=True, memory_scope="team")
    with pytest.raises(ValueError, match="agent_id"):
        Agent(model, add_memories_to_context=True, memory_scope="agent")


def test_selection_keeps_the_name_in_view_and_shows_each_fact_once() -> None:
    memory = Memory(embedder=None)
    memory.add_user_memory(UserMemory("The user's name is Ava"), "ava")
    memory.add_user_memories(user_facts(500), "ava")
    memory.add_user_memories(
        [UserMemory("The user loves sushi"), UserMemory("the user LOVES sushi.")], "ava"
    )
    query = MemoryQuery(user_id="ava")
    chosen = select_memories(memory.db, query, "Which sushi place should I try?", 10)
    texts = [m.memory for m in chosen]
    assert texts[0] == "The user's name is Ava"
    assert sum("sushi" in t.lower() for t in texts) == 1
    assert len(chosen) == 10
    assert len(distinct(chosen * 2, 100)) == 10


def test_the_memory_section_keeps_to_a_token_budget_too() -> None:
    memories = [UserMemory(f"The user enjoys activity number {i} with friends") for i in range(50)]
    by_chars = fit_memories(memories, 4000)
    by_tokens = fit_memories(memories, 4000, budget_tokens=60)
    assert len(by_tokens) < len(by_chars)
    assert sum(estimate_tokens(f"- {m.memory}") for m in by_tokens) <= 60
    assert estimate_tokens("The user likes tea.") == 5


@pytest.mark.default_embedder
def test_the_default_embedder_loads_on_first_search_and_misses_no_memory() -> None:
    from noted.retrieval.local import LocalEmbedder

    memory = Memory()  # in-process, the default embedder
    assert memory.index is not None and isinstance(memory.embedder, LocalEmbedder)
    assert not memory.index.embed_on_write
    memory.add_user_memory(UserMemory("Ava works as a nurse at the city hospital"), "ava")
    memory.add_user_memories([UserMemory("Ava likes to ski"), UserMemory("Ava has a cat")], "ava")
    assert memory.db.count_memories_to_embed("ava", memory.index.model_name) == 3  # not yet
    found = memory.search_user_memories("What is her job?", "ava", retrieval_method="semantic")
    assert found[0].memory == "Ava works as a nurse at the city hospital"
    assert len(found) == 3  # every memory was embedded by the search
    assert memory.db.count_memories_to_embed("ava", memory.index.model_name) == 0
    for off in (None, "none"):
        assert Memory(embedder=off).index is None


def test_the_environment_names_the_default_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTED_EMBEDDER", "none")
    assert Memory().index is None
    monkeypatch.setenv("NOTED_EMBEDDER", "nonsense")
    with pytest.raises(ValueError, match="unknown embedder"):
        Memory()


def calling(name: str, **arguments: object) -> FunctionModel:
    """A model that calls one tool, then answers with what the tool said."""
    from noted.models import ModelResponse, ToolCall

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> ModelResponse | str:
        if messages[-1].role == "tool":
            return messages[-1].content or ""
        return ModelResponse(tool_calls=[ToolCall(name, dict(arguments))])

    return FunctionModel(fn)


def test_a_scoped_agents_search_tool_finds_only_its_memories_and_those_of_no_agent() -> None:
    memory = Memory(embedder=None)
    memory.add_user_memory(UserMemory("The user likes spicy food", agent_id="chef"), "ava")
    memory.add_user_memory(UserMemory("The user hates spicy food", agent_id="coach"), "ava")
    memory.add_user_memory(UserMemory("The user grows spicy food"), "ava")
    found = {}
    for scope in ("agent", "user"):
        agent = Agent(
            calling("search_memories", query="spicy food"),
            agent_id="chef",
            memory=memory,
            user_id="ava",
            enable_agentic_memory=True,
            add_memories_to_context=False,
            memory_scope=scope,
        )
        found[scope] = agent.run("What spicy food do I like?").content or ""
    assert "likes" in found["agent"] and "grows" in found["agent"]
    assert "hates" not in found["agent"]
    assert "hates" in found["user"]


def test_a_scoped_agent_clears_only_what_it_sees() -> None:
    memory = Memory(embedder=None, delete_memories=True, clear_memories=True)
    memory.add_user_memory(UserMemory("The user likes spicy food", agent_id="chef"), "ava")
    memory.add_user_memory(UserMemory("The user runs on Sundays", agent_id="coach"), "ava")
    memory.add_user_memory(UserMemory("The user lives in Lyon"), "ava")
    memory.add_user_memory(UserMemory("The user likes tea", agent_id="chef"), "bob")
    chef = Agent(
        calling("clear_memories"),
        agent_id="chef",
        memory=memory,
        user_id="ava",
        enable_agentic_memory=True,
        memory_scope="agent",
    )
    said = chef.run("Forget everything about me.").content
    assert said == "Forgot the 2 memories of the user that this agent sees."
    assert [m.memory for m in memory.get_user_memories("ava")] == ["The user runs on Sundays"]
    assert memory.count_user_memories("bob") == 1
    everyone = Agent(
        calling("clear_memories"), memory=memory, user_id="ava", enable_agentic_memory=True
    )
    assert everyone.run("Forget everything.").content == "Forgot everything about the user."
    assert memory.count_user_memories("ava") == 0
