"""Varied, realistic facts about a user, as a memory manager would write them: work,
family, pets, places, food, health, hobbies, travel, plans and preferences, each drawn from
its own templates and values, so that a search must tell them apart as it would for a real
user (no filler sharing one sentence)."""

from __future__ import annotations

import random
from collections.abc import Callable

from noted import UserMemory

PEOPLE = [
    "Emma",
    "Liam",
    "Sofia",
    "Noah",
    "Maya",
    "Lucas",
    "Aisha",
    "Mateo",
    "Chloe",
    "Ravi",
    "Hannah",
    "Diego",
    "Yuki",
    "Omar",
    "Greta",
    "Tomas",
    "Priya",
    "Jonas",
    "Lena",
    "Kofi",
]
RELATIONS = [
    "sister",
    "brother",
    "cousin",
    "colleague",
    "neighbour",
    "best friend",
    "aunt",
    "uncle",
    "manager",
    "roommate",
    "mentor",
    "niece",
    "nephew",
    "grandmother",
]
CITIES = [
    "Denver",
    "Lisbon",
    "Osaka",
    "Toronto",
    "Austin",
    "Berlin",
    "Melbourne",
    "Dublin",
    "Nairobi",
    "Montreal",
    "Bologna",
    "Valparaiso",
    "Kraków",
    "Hanoi",
    "Reykjavik",
]
JOBS = [
    "nurse",
    "data analyst",
    "high school teacher",
    "carpenter",
    "product designer",
    "paramedic",
    "accountant",
    "architect",
    "barista",
    "software engineer",
    "pharmacist",
    "civil engineer",
    "veterinary technician",
    "translator",
    "pilot",
]
HOBBIES = [
    "bouldering",
    "watercolour painting",
    "sourdough baking",
    "birdwatching",
    "playing the cello",
    "trail running",
    "knitting",
    "chess",
    "woodworking",
    "salsa dancing",
    "astrophotography",
    "beekeeping",
    "kayaking",
    "pottery",
    "learning Portuguese",
    "restoring old bicycles",
    "gardening",
    "fly fishing",
]
PETS = [
    ("dog", ["Biscuit", "Pepper", "Luna", "Rocket"]),
    ("cat", ["Mochi", "Olive", "Ziggy"]),
    ("parrot", ["Kiwi"]),
    ("rabbit", ["Clover", "Hazel"]),
    ("tortoise", ["Sheldon"]),
]
FOODS = [
    "Thai green curry",
    "mushroom risotto",
    "falafel wraps",
    "ramen",
    "lemon tart",
    "spinach lasagna",
    "tacos al pastor",
    "miso soup",
    "pierogi",
    "shakshuka",
    "dark chocolate",
    "oat milk lattes",
    "spicy kimchi",
    "fig jam",
    "grilled halloumi",
]
DISLIKES = [
    "coriander",
    "olives",
    "blue cheese",
    "licorice",
    "very sweet drinks",
    "okra",
    "raw onions",
    "pineapple on pizza",
    "instant coffee",
    "anchovies",
]
HEALTH = [
    "has mild asthma and carries an inhaler",
    "wears glasses for reading",
    "is recovering from a sprained ankle",
    "gets migraines when sleep deprived",
    "is lactose intolerant",
    "sees a physiotherapist for lower back pain",
    "takes vitamin D in winter",
    "had knee surgery two years ago",
    "is trying to cut down on caffeine",
    "has hay fever every spring",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
SHOWS = [
    "a documentary about octopuses",
    "a Korean thriller series",
    "an old sitcom",
    "a cooking competition",
    "a podcast about ancient Rome",
    "a science fiction trilogy",
    "a biography of Marie Curie",
    "a mystery novel set in Venice",
]
GOALS = [
    "run a half marathon",
    "save for a house deposit",
    "learn to swim properly",
    "read fifty books this year",
    "get a promotion to team lead",
    "visit every national park in the country",
    "finish a pottery course",
    "pay off a student loan",
    "build a standing desk",
    "write a short story collection",
]


def _facts(r: random.Random) -> list[Callable[[], tuple[str, list[str]]]]:
    def person() -> str:
        return r.choice(PEOPLE)

    def pet() -> str:
        kind, names = r.choice(PETS)
        return f"The user has a {kind} named {r.choice(names)}"

    return [
        lambda: (f"The user works as a {r.choice(JOBS)} in {r.choice(CITIES)}", ["work"]),
        lambda: (
            f"The user's {r.choice(RELATIONS)} {person()} lives in {r.choice(CITIES)}",
            ["family"],
        ),
        lambda: (
            f"The user's {r.choice(RELATIONS)} {person()} is a {r.choice(JOBS)}",
            ["family", "work"],
        ),
        lambda: (
            f"The user has been {r.choice(HOBBIES)} since {r.randint(2005, 2024)}",
            ["hobbies"],
        ),
        lambda: (f"The user wants to try {r.choice(HOBBIES)} with {person()}", ["hobbies"]),
        lambda: (pet(), ["pets"]),
        lambda: (f"The user loves {r.choice(FOODS)}", ["food"]),
        lambda: (f"The user dislikes {r.choice(DISLIKES)}", ["food"]),
        lambda: (f"The user cooked {r.choice(FOODS)} for {person()}'s birthday", ["food"]),
        lambda: (f"The user {r.choice(HEALTH)}", ["health"]),
        lambda: (
            f"The user is planning a trip to {r.choice(CITIES)} in {r.choice(MONTHS)}",
            ["travel"],
        ),
        lambda: (
            f"The user visited {r.choice(CITIES)} with {person()} last {r.choice(MONTHS)}",
            ["travel"],
        ),
        lambda: (f"The user recently watched {r.choice(SHOWS)}", ["media"]),
        lambda: (f"The user's goal for this year is to {r.choice(GOALS)}", ["goals"]),
        lambda: (
            f"The user meets {person()} for coffee every {r.choice(['Monday', 'Friday', 'Sunday'])}",
            ["social"],
        ),
        lambda: (f"The user prefers {r.choice(['morning', 'evening'])} meetings", ["work"]),
        lambda: (f"The user's favourite month is {r.choice(MONTHS)}", ["preferences"]),
    ]


def user_facts(count: int, seed: int = 7) -> list[UserMemory]:
    """``count`` distinct facts about one user (the same ones for the same seed)."""
    r = random.Random(seed)
    makers = _facts(r)
    seen: set[str] = set()
    found: list[UserMemory] = []
    while len(found) < count:
        text, topics = r.choice(makers)()
        if text in seen:
            text = f"{text}, as mentioned again in {r.choice(MONTHS)} {r.randint(2015, 2025)}"
            if text in seen:
                continue
        seen.add(text)
        found.append(UserMemory(text, topics=topics))
    return found
