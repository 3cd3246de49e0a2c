"""Builds the multi-hop evaluation set (corpus.jsonl, questions.jsonl next to this file): a small fictional company.

    uv run python benchmarks/multihop/build_dataset.py                      # rewrite the development set
    uv run python benchmarks/multihop/build_dataset.py --heldout            # rewrite the held-out set (heldout/)
    uv run python benchmarks/multihop/build_dataset.py [--heldout] --check  # exit 1 when committed files differ
    uv run python benchmarks/multihop/build_dataset.py --seed 7 --out /tmp/mh7  # another draw, anywhere

Deterministic: fixed name lists and templates, one `random.Random(seed)` for every choice (who leads what, who
works where, years, figures), no network and no model. The held-out set is another company (HELDOUT_NAMES: no
name shared with the development set) drawn with its own seed. tests/unit/test_multihop_dataset.py checks that
the committed files are exactly what this script writes. How the sets are made and why: README.md here.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED = 14
HELDOUT_SEED = 41
HERE = Path(__file__).resolve().parent
HELDOUT_DIR = HERE / "heldout"

# city -> (building, parking, site manager); site managers appear on their office page only.
OFFICES = {
    "Lisbon": ("the Tejo Tower", "none on site; the Cais do Sodre garage gives a discount", "Beatriz Souza"),
    "Krakow": ("the Vistula Business Park", "12 spaces, booked through reception", "Anders Lund"),
    "Austin": ("the Riverside Commons", "a free garage under the building", "Gretchen Alvarez"),
    "Nairobi": ("the Westlands Court", "8 spaces for visitors", "Nia Kamau"),
    "Osaka": ("the Umeda Gate building", "none; take the Midosuji line", "Yusuf Demir"),
    "Dublin": ("the Grand Canal Quay", "bicycle racks only", "Colm Byrne"),
    "Montreal": ("the Old Port Exchange", "20 spaces in the east lot", "Mei Lin Park"),
}
# Pairs of similar names sit next to each other: the agent's search for one finds the other as well.
PEOPLE = [
    "Ana Duarte", "Ana Durante", "Marek Novak", "Marta Novak", "Priya Raman", "Priya Ramesh",
    "Tomas Ortega", "Tomas Ortiz", "Lena Fischer", "Lena Fisher", "Hiroshi Tanaka", "Hiroko Tanaka",
    "Kwame Mensah", "Siobhan Kelly", "Olivia Brandt", "Rafael Costa", "Chen Wei", "Jonas Berg",
    "Amara Okafor", "Ingrid Solberg",
]  # fmt: skip
ROLES = [
    "backend engineer", "data analyst", "product designer", "security engineer", "finance controller",
    "site reliability engineer", "technical writer", "procurement specialist", "mobile developer",
]  # fmt: skip
TEAMS = ["Payments", "Identity", "Data Platform", "Mobile Apps", "Finance Systems", "Logistics", "Search"]
PROJECTS = {
    "Falcon": "replace the legacy invoice matching engine",
    "Heron": "move customer support chat to a single inbox",
    "Juniper": "consolidate the three warehouse inventory databases",
    "Quartz": "rebuild the mobile checkout flow",
    "Tundra": "archive cold analytics data to cheaper storage",
    "Mosaic": "unify the product catalogue across regions",
    "Beacon": "add real-time shipment tracking for customers",
    "Orchid": "introduce single sign-on for partner portals",
    "Cobalt": "automate quarterly revenue reconciliation",
    "Atlas": "map every internal service and its owners",
}
# vendor -> (headquarters city, country)
VENDORS = {
    "Northwind Analytics": ("Rotterdam", "Netherlands"),
    "Bluepeak Systems": ("Gdansk", "Poland"),
    "Carraway Logistics": ("Porto", "Portugal"),
    "Zenith Labs": ("Tallinn", "Estonia"),
    "Orbital Data": ("Lyon", "France"),
    "Kestrel Security": ("Vancouver", "Canada"),
    "Meridian Cloud": ("Brisbane", "Australia"),
}
SERVICES = ["payments API", "login service", "search index", "order database", "mobile push gateway", "billing portal"]
CAUSES = [
    "an expired TLS certificate", "a full disk on the primary replica", "a misconfigured load balancer rule",
    "a runaway batch job", "a faulty schema migration", "a DNS record deleted by mistake",
]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]
STATUS_NOTES = [
    ("the load test at twice the expected traffic", "the pilot with two regional teams", "hiring one more tester"),
    ("the data model review", "the first internal demo", "a dependency on the network upgrade"),
    ("the security review of the design", "moving the staging environment", "holiday cover in August"),
    ("the migration dry run", "sign-off from legal", "unclear ownership of the old reports"),
]


@dataclass(frozen=True)
class NameLists:
    """The fixed lists a set is written from; another set of lists makes another company (the held-out set)."""

    offices: dict[str, tuple[str, str, str]]  # city -> (building, parking, site manager)
    people: list[str]
    twin: str  # a person with a similar-named colleague: the single questions' trap
    teams: list[str]
    projects: dict[str, str]  # codename -> goal
    vendors: dict[str, tuple[str, str]]  # name -> (headquarters city, country)
    roles: list[str] = field(default_factory=lambda: list(ROLES))
    services: list[str] = field(default_factory=lambda: list(SERVICES))
    causes: list[str] = field(default_factory=lambda: list(CAUSES))


DEV_NAMES = NameLists(OFFICES, PEOPLE, "Priya Ramesh", TEAMS, PROJECTS, VENDORS)
# The held-out company: no name shared with the development set, the same kinds of traps (six pairs of similar
# names, no name inside another), so a planner tuned on the first cannot have learnt its names.
HELDOUT_NAMES = NameLists(
    offices={
        "Valencia": ("the Turia Building", "6 spaces for visitors", "Lucia Moreno"),
        "Tampere": ("the Hervanta Hub", "free parking behind the building", "Eero Virtanen"),
        "Denver": ("the Union Station Lofts", "a paid garage across the street", "Marcus Reed"),
        "Accra": ("the Airport City Plaza", "10 spaces, booked through reception", "Kofi Boateng"),
        "Busan": ("the Haeundae Centre", "none; take metro line 2", "Jiwoo Han"),
        "Glasgow": ("the Clyde Wharf", "bicycle racks only", "Fiona MacLeod"),
        "Perth": ("the Swan River House", "15 spaces in the basement", "Liam Walsh"),
    },
    people=[
        "Sofia Marin", "Sofia Morin", "Pavel Horak", "Petra Horak", "Nikhil Rao", "Nikhil Roy",
        "Diego Salas", "Diego Solis", "Emma Larsen", "Emma Larson", "Kenji Sato", "Keiko Sato",
        "Yaw Asante", "Aoife Brennan", "Hanna Weber", "Lucas Pereira", "Zhang Min", "Erik Holm",
        "Ngozi Eze", "Astrid Nygaard",
    ],
    twin="Nikhil Roy",
    teams=["Billing", "Accounts", "Fraud Detection", "Warehouse Systems", "Customer Portal", "Analytics", "Networking"],
    projects={
        "Harbor": "consolidate supplier onboarding into one workflow",
        "Lantern": "give field engineers offline access to manuals",
        "Meteor": "speed up the nightly settlement batch",
        "Nimbus": "move the reporting stack to managed databases",
        "Pelican": "add returns labels to the customer portal",
        "Sapphire": "redesign the loyalty points ledger",
        "Summit": "replace the desk booking tool",
        "Willow": "automate payroll tax filings",
        "Zephyr": "cut cloud spending on idle test clusters",
        "Granite": "retire the legacy document archive",
    },
    vendors={
        "Silverline Software": ("Ghent", "Belgium"),
        "Redwood Robotics": ("Aarhus", "Denmark"),
        "Tidewater Freight": ("Bilbao", "Spain"),
        "Larkspur Data": ("Graz", "Austria"),
        "Ironbridge Security": ("Halifax", "Canada"),
        "Pinnacle Hosting": ("Auckland", "New Zealand"),
        "Saffron Metrics": ("Pune", "India"),
    },
)  # fmt: skip


@dataclass(frozen=True)
class Person:
    name: str
    role: str
    team: str
    city: str
    joined: int
    extension: int

    @property
    def doc_id(self) -> str:
        return "staff-" + slug(self.name)


@dataclass(frozen=True)
class Office:
    city: str
    desks: int
    opened: int


@dataclass(frozen=True)
class Project:
    name: str
    lead: Person
    vendor: str
    budget: str
    launch: str


@dataclass(frozen=True)
class Vendor:
    name: str
    since: int
    contract: str
    renewal: str
    net_days: int


@dataclass(frozen=True)
class Incident:
    number: str
    service: str
    cause: str
    date: str
    minutes: int
    commander: Person
    also_on_call: Person

    @property
    def doc_id(self) -> str:
        return "incident-" + slug(self.number)


@dataclass(frozen=True)
class World:
    names: NameLists
    people: list[Person]
    offices: list[Office]
    projects: list[Project]
    vendors: list[Vendor]
    incidents: list[Incident]
    travel: dict[int, tuple[int, int, int]]  # year -> (hotel cap, daily meal allowance, premium economy hours)
    expense: dict[int, tuple[int, int]]  # year -> (client meal limit per guest, receipt threshold)


def slug(text: str) -> str:
    return "-".join(text.lower().replace(".", "").split())


def distinct_ints(rng: random.Random, low: int, high: int, count: int, step: int = 1) -> list[int]:
    return rng.sample(range(low, high, step), count)


def build_world(rng: random.Random, names: NameLists) -> World:
    cities = list(names.offices)
    shuffled = rng.sample(names.people, len(names.people))
    extensions = distinct_ints(rng, 2000, 9999, len(names.people))
    people = [
        Person(
            name,
            rng.choice(names.roles),
            rng.choice(names.teams),
            cities[i % len(cities)],
            rng.randrange(2009, 2024),
            ext,
        )
        for i, (name, ext) in enumerate(zip(shuffled, extensions, strict=True))
    ]
    people.sort(key=lambda person: names.people.index(person.name))
    desks, opened = distinct_ints(rng, 60, 400, len(cities), 10), distinct_ints(rng, 2004, 2023, len(cities))
    offices = [Office(city, desks[i], opened[i]) for i, city in enumerate(cities)]
    leads = rng.sample(people, len(names.projects))
    budgets = distinct_ints(rng, 6, 40, len(names.projects))
    projects = [
        Project(name, leads[i], rng.choice(list(names.vendors)), f"{budgets[i] / 10:.1f} million euros",
                f"Q{rng.randrange(1, 5)} {rng.randrange(2025, 2028)}")
        for i, name in enumerate(names.projects)
    ]  # fmt: skip
    contracts, nets = distinct_ints(rng, 1000, 9999, len(names.vendors)), [15, 30, 45, 60, 90, 30, 45]
    rng.shuffle(nets)
    vendors = [
        Vendor(name, rng.randrange(2012, 2024), f"V-{contracts[i]}",
               f"{rng.randrange(1, 29)} {rng.choice(MONTHS)} {rng.randrange(2026, 2029)}", nets[i])
        for i, name in enumerate(names.vendors)
    ]  # fmt: skip
    numbers, minutes = (
        distinct_ints(rng, 3000, 9999, len(names.services)),
        distinct_ints(rng, 12, 240, len(names.services)),
    )
    incidents = []
    for i, service in enumerate(names.services):
        commander = rng.choice(people)
        also = rng.choice([person for person in people if person.city != commander.city])
        date = f"{rng.randrange(1, 29)} {rng.choice(MONTHS)} 2025"
        incidents.append(Incident(f"INC-{numbers[i]}", service, names.causes[i], date, minutes[i], commander, also))
    hotel, meals, hours = rng.randrange(140, 170, 5), rng.randrange(35, 50), rng.randrange(5, 9)
    travel: dict[int, tuple[int, int, int]] = {}
    for year in (2023, 2024, 2025):
        travel[year] = (hotel, meals, hours)
        hotel, meals, hours = hotel + rng.choice([-10, 15, 20, 25]), meals + rng.choice([-3, 4, 6]), hours
    limit, receipts = rng.randrange(50, 80, 5), rng.choice([20, 25, 30])
    expense = {2024: (limit, receipts), 2025: (limit + rng.choice([-10, 10, 15]), receipts + 5)}
    return World(names, people, offices, projects, vendors, incidents, travel, expense)


def doc(doc_id: str, title: str, text: str, **metadata: str) -> dict[str, Any]:
    return {"id": doc_id, "title": title, "text": text, "metadata": metadata}


def staff_documents(world: World) -> list[dict[str, Any]]:
    # Three phrasings; every one says "works from the <city> office" and "joined the company in <year>".
    templates = [
        "{n} is a {r} in the {t} team. {n} works from the {c} office and joined the company in {j}. "
        "Desk extension: {x}.",
        "{n}, {r}, {t} team. Works from the {c} office since joining the company in {j}. Desk extension {x}.",
        "{n} joined the company in {j} as a {r} and now sits with the {t} team. {n} works from the {c} office; "
        "desk extension {x}.",
    ]
    return [
        doc(p.doc_id, f"Staff directory: {p.name}",
            templates[i % 3].format(n=p.name, r=p.role, t=p.team, c=p.city, j=p.joined, x=p.extension),
            kind="staff", team=p.team)
        for i, p in enumerate(world.people)
    ]  # fmt: skip


def office_documents(world: World) -> list[dict[str, Any]]:
    offices = world.names.offices
    return [
        doc(f"office-{slug(o.city)}", f"Office guide: {o.city}",
            f"The {o.city} office occupies two floors of {offices[o.city][0]}. It opened in {o.opened} and has "
            f"{o.desks} desks. The site manager is {offices[o.city][2]}. Parking: {offices[o.city][1]}. "
            "Visitors sign in at reception.",
            kind="office", city=o.city)
        for o in world.offices
    ]  # fmt: skip


def project_documents(world: World, rng: random.Random) -> list[dict[str, Any]]:
    lead_sentences = ["The project lead is {l}.", "{l} is the project lead.", "Project lead: {l}."]
    charters = [
        doc(f"charter-{slug(p.name)}", f"Project {p.name} charter",
            f"Project {p.name} will {world.names.projects[p.name]}. " + lead_sentences[i % 3].format(l=p.lead.name)
            + f" Approved budget: {p.budget}. Target launch: {p.launch}. Main supplier: {p.vendor}.",
            kind="charter", project=p.name)
        for i, p in enumerate(world.projects)
    ]  # fmt: skip
    # Decoys: status updates name the project but never its lead or supplier.
    updates = []
    for i, p in enumerate(rng.sample(world.projects, 8)):
        done, next_step, risk = STATUS_NOTES[i % len(STATUS_NOTES)]
        text = (
            f"Project {p.name} status update, week {rng.randrange(5, 48)}: the team finished {done}. "
            f"Next milestone: {next_step}. Open risk: {risk}."
        )
        updates.append(doc(f"status-{slug(p.name)}", f"Project {p.name} status update", text, kind="status"))
    return charters + updates


def vendor_documents(world: World) -> list[dict[str, Any]]:
    seats = world.names.vendors
    return [
        doc(f"vendor-{slug(v.name)}", f"Vendor record: {v.name}",
            f"{v.name} has been an approved vendor since {v.since}. Headquarters: {seats[v.name][0]}, "
            f"{seats[v.name][1]}. Contract {v.contract} renews on {v.renewal}. Payment terms: net {v.net_days} days.",
            kind="vendor")
        for v in world.vendors
    ]  # fmt: skip


def policy_documents(world: World) -> list[dict[str, Any]]:
    travel = [
        doc(f"travel-policy-{year}", f"Travel policy {year}",
            f"From 1 January {year}, hotel stays are reimbursed up to {hotel} euros per night. The daily meal "
            f"allowance while travelling is {meals} euros. Flights longer than {hours} hours may be booked in "
            "premium economy.",
            kind="policy", year=str(year))
        for year, (hotel, meals, hours) in world.travel.items()
    ]  # fmt: skip
    expense = [
        doc(f"expense-policy-{year}", f"Expense policy {year}",
            f"In {year}, client meals are reimbursed up to {limit} euros per guest. Receipts are required for "
            f"any claim above {receipts} euros, and claims must be filed within 60 days.",
            kind="policy", year=str(year))
        for year, (limit, receipts) in world.expense.items()
    ]  # fmt: skip
    return travel + expense


def incident_documents(world: World) -> list[dict[str, Any]]:
    return [
        doc(i.doc_id, f"Incident report {i.number}",
            f"On {i.date} the {i.service} was unavailable for {i.minutes} minutes. Root cause: {i.cause}. "
            f"Incident commander: {i.commander.name}; also on call: {i.also_on_call.name}.",
            kind="incident")
        for i in world.incidents
    ]  # fmt: skip


def decoy_documents(world: World, rng: random.Random) -> list[dict[str, Any]]:
    """Pages that mention projects, offices and policies without the facts the questions ask for."""
    projects = [p.name for p in rng.sample(world.projects, 6)]
    newcomers = rng.sample(world.people, 4)
    return [
        doc("minutes-steering-1", "Steering committee minutes, March",
            f"Reviewed Projects {projects[0]}, {projects[1]} and {projects[2]}. Project {projects[0]} asked for more "
            f"test environments; Project {projects[1]} moves its launch by one quarter.", kind="minutes"),
        doc("minutes-steering-2", "Steering committee minutes, September",
            f"Reviewed Projects {projects[3]}, {projects[4]} and {projects[5]}. Finance will confirm next year's "
            f"travel budget. Project {projects[5]} closes its discovery phase.", kind="minutes"),
        doc("guide-travel-booking", "How to book business travel",
            "Book trips through the travel portal at least 14 days ahead. Hotels booked outside the portal need "
            "approval from your cost centre owner. Nightly limits are set by the travel policy of the year of "
            "travel.", kind="guide"),
        doc("newsletter-1", "Company newsletter, spring",
            f"Welcome back to {newcomers[0].name} and {newcomers[1].name}, home from parental leave. The "
            f"{newcomers[0].city} office hosted the demo day of Project {projects[2]}.", kind="newsletter"),
        doc("newsletter-2", "Company newsletter, autumn",
            f"Congratulations to {newcomers[2].name} and {newcomers[3].name} on their promotions. The "
            f"{newcomers[3].city} office now has a quiet room on every floor.", kind="newsletter"),
    ]  # fmt: skip


def build_documents(world: World, rng: random.Random) -> list[dict[str, Any]]:
    return (
        staff_documents(world)
        + office_documents(world)
        + project_documents(world, rng)
        + vendor_documents(world)
        + policy_documents(world)
        + incident_documents(world)
        + decoy_documents(world, rng)
    )


def question(
    of: str, text: str, kind: str, supporting: list[str], expected: list[str], bridge: list[str] | None = None
) -> dict[str, Any]:
    """One question; `of` names the value list (value_lists) its expected strings come from."""
    row: dict[str, Any] = {"id": "", "question": text, "type": kind, "supporting": supporting, "expected": expected}
    if bridge:
        row["bridge"] = bridge  # entities the answer goes through; never in the question
    row["of"] = of
    return row


def value_lists(world: World) -> dict[str, list[str]]:
    """Every value of each kind the questions ask for, as the documents spell it: another value of the kind
    asked for in an answer is a competing claim ("rivals" of a question, eval_multihop's answer_precision)."""
    names = world.names
    return {
        "office city": list(names.offices),
        "site manager": [manager for _, _, manager in names.offices.values()],
        "person": [person.name for person in world.people],
        "team": list(names.teams),
        "vendor": list(names.vendors),
        "vendor city": [city for city, _ in names.vendors.values()],
        "year joined": [str(person.joined) for person in world.people],
        "desk extension": [str(person.extension) for person in world.people],
        "office opened": [str(office.opened) for office in world.offices],
        "desks": [f"{office.desks} desks" for office in world.offices],
        "renewal date": [vendor.renewal for vendor in world.vendors],
        "payment terms": [f"net {vendor.net_days}" for vendor in world.vendors],
        "outage minutes": [f"{incident.minutes} minutes" for incident in world.incidents],
        "cause": [incident.cause.split(" ", 1)[1] for incident in world.incidents],
        "budget": [project.budget.removesuffix(" euros") for project in world.projects],
        "hotel cap": [str(hotel) for hotel, _, _ in world.travel.values()],
        "meal allowance": [f"{meals} euros" for _, meals, _ in world.travel.values()],
        "client meal limit": [str(limit) for limit, _ in world.expense.values()],
    }


def with_rivals(row: dict[str, Any], values: dict[str, list[str]]) -> dict[str, Any]:
    """`rivals`: the other values of the kind the question asks for, each once, in list order."""
    expected = {text.casefold() for text in row["expected"]}
    kind = values[row.pop("of")]
    assert expected <= {value.casefold() for value in kind}, (row["question"], row["expected"])
    row["rivals"] = list(dict.fromkeys(value for value in kind if value.casefold() not in expected))
    return row


def charter_id(project: Project) -> str:
    return "charter-" + slug(project.name)


def vendor_id(name: str) -> str:
    return "vendor-" + slug(name)


def office_id(city: str) -> str:
    return "office-" + slug(city)


def lead_bridges(world: World, rng: random.Random) -> list[dict[str, Any]]:
    """Project -> its lead (charter) -> the lead's staff entry, and for three of them on to the office page."""
    rows = []
    office = [
        "Which office does the lead of Project {p} work from?",
        "In which city does the person leading Project {p} work?",
        "Project {p}'s lead works out of which office?",
    ]
    for i, p in enumerate(rng.sample(world.projects, 6)):
        rows.append(question("office city", office[i % 3].format(p=p.name), "bridge", [charter_id(p), p.lead.doc_id],
                             [p.lead.city], [p.lead.name]))  # fmt: skip
    joined = ["In which year did the lead of Project {p} join the company?",
              "When did the person leading Project {p} join the company?"]  # fmt: skip
    for i, p in enumerate(rng.sample(world.projects, 3)):
        rows.append(question("year joined", joined[i % 2].format(p=p.name), "bridge", [charter_id(p), p.lead.doc_id],
                             [str(p.lead.joined)], [p.lead.name]))  # fmt: skip
    manager = ["Who is the site manager of the office where Project {p}'s lead works?",
               "Name the site manager responsible for the office that the lead of Project {p} works from."]  # fmt: skip
    for i, p in enumerate(rng.sample(world.projects, 3)):
        chain = [charter_id(p), p.lead.doc_id, office_id(p.lead.city)]
        rows.append(question("site manager", manager[i % 2].format(p=p.name), "bridge", chain,
                             [world.names.offices[p.lead.city][2]], [p.lead.name, p.lead.city]))  # fmt: skip
    p = rng.choice(world.projects)
    rows.append(question("desk extension", f"What desk extension does the lead of Project {p.name} have?", "bridge",
                         [charter_id(p), p.lead.doc_id], [str(p.lead.extension)], [p.lead.name]))  # fmt: skip
    return rows


def other_bridges(world: World, rng: random.Random) -> list[dict[str, Any]]:
    """Project -> its supplier's vendor record; incident -> its commander's staff entry."""
    vendors = {v.name: v for v in world.vendors}
    rows = []
    seat = ["In which city is the main supplier of Project {p} headquartered?",
            "Where does the vendor behind Project {p} have its headquarters?"]  # fmt: skip
    for i, p in enumerate(rng.sample(world.projects, 4)):
        rows.append(question("vendor city", seat[i % 2].format(p=p.name), "bridge",
                             [charter_id(p), vendor_id(p.vendor)], [world.names.vendors[p.vendor][0]],
                             [p.vendor]))  # fmt: skip
    renewal = ["When does the contract with Project {p}'s main supplier renew?",
               "On what date is the contract of the vendor supplying Project {p} up for renewal?"]  # fmt: skip
    for i, p in enumerate(rng.sample(world.projects, 2)):
        rows.append(question("renewal date", renewal[i % 2].format(p=p.name), "bridge",
                             [charter_id(p), vendor_id(p.vendor)], [vendors[p.vendor].renewal],
                             [p.vendor]))  # fmt: skip
    team = ["Which team is the incident commander of {n} part of?",
            "The commander of incident {n} belongs to which team?"]  # fmt: skip
    for i, inc in enumerate(rng.sample(world.incidents, 3)):
        rows.append(question("team", team[i % 2].format(n=inc.number), "bridge", [inc.doc_id, inc.commander.doc_id],
                             [inc.commander.team], [inc.commander.name]))  # fmt: skip
    return rows


def differing_pair(rng: random.Random, items: list[Any], key: Any) -> tuple[Any, Any]:
    """Two items whose `key` differs (a comparison between equal figures says nothing)."""
    while True:
        first, second = rng.sample(items, 2)
        if key(first) != key(second):
            return first, second


def comparison_questions(world: World, rng: random.Random) -> list[dict[str, Any]]:
    t, e = world.travel, world.expense
    a, b = differing_pair(rng, world.offices, lambda o: o.desks)
    c, d = differing_pair(rng, world.offices, lambda o: o.opened)
    v, w = differing_pair(rng, world.vendors, lambda x: x.net_days)
    i, j = differing_pair(rng, world.incidents, lambda x: x.minutes)
    p, q = differing_pair(rng, world.projects, lambda x: x.budget)
    r, s = differing_pair(rng, world.projects, lambda x: x.lead.joined)
    return [
        question("hotel cap", "Did the 2025 travel policy raise or lower the hotel cap compared with 2024?",
                 "comparison", ["travel-policy-2024", "travel-policy-2025"], [str(t[2024][0]), str(t[2025][0])]),
        question("meal allowance", "How did the daily meal allowance for travel change from 2023 to 2024?",
                 "comparison", ["travel-policy-2023", "travel-policy-2024"],
                 [f"{t[2023][1]} euros", f"{t[2024][1]} euros"]),
        question("client meal limit",
                 "Is the client meal limit per guest higher in the 2025 expense policy or in the 2024 one?",
                 "comparison", ["expense-policy-2024", "expense-policy-2025"], [str(e[2024][0]), str(e[2025][0])]),
        question("desks", f"Which office has more desks, {a.city} or {b.city}?", "comparison",
                 [office_id(a.city), office_id(b.city)], [f"{a.desks} desks", f"{b.desks} desks"]),
        question("office opened", f"Which opened first, the {c.city} office or the {d.city} office?", "comparison",
                 [office_id(c.city), office_id(d.city)], [str(c.opened), str(d.opened)]),
        question("payment terms", f"Does {v.name} or {w.name} get paid sooner under its payment terms?", "comparison",
                 [vendor_id(v.name), vendor_id(w.name)], [f"net {v.net_days}", f"net {w.net_days}"]),
        question("outage minutes", f"Which outage lasted longer, {i.number} or {j.number}?", "comparison",
                 [i.doc_id, j.doc_id], [f"{i.minutes} minutes", f"{j.minutes} minutes"]),
        question("budget", f"Is Project {p.name}'s approved budget larger than Project {q.name}'s?", "comparison",
                 [charter_id(p), charter_id(q)], [p.budget.removesuffix(" euros"), q.budget.removesuffix(" euros")]),
        question("year joined",
                 f"Who has been with the company longer: the lead of Project {r.name} or the lead of Project "
                 f"{s.name}?", "comparison", [charter_id(r), r.lead.doc_id, charter_id(s), s.lead.doc_id],
                 [str(r.lead.joined), str(s.lead.joined)], [r.lead.name, s.lead.name]),
    ]  # fmt: skip


def conjunction_questions(world: World, rng: random.Random) -> list[dict[str, Any]]:
    """Four intersections (an incident's two on-call people x one office) and four two-part questions."""
    on_call = [
        "Which colleague from the {c} office was on call during {n}?",
        "Of the people on call for incident {n}, who works from {c}?",
        "Name the {c}-based person who was on call when {n} happened.",
        "{n}: which of its on-call staff sits in the {c} office?",
    ]
    rows = []
    for k, inc in enumerate(rng.sample(world.incidents, 4)):
        person = rng.choice([inc.commander, inc.also_on_call])
        rows.append(question("person", on_call[k].format(c=person.city, n=inc.number), "conjunction",
                             [inc.doc_id, person.doc_id], [person.name], [person.name]))  # fmt: skip
    p, q = rng.sample(world.projects, 2)
    v, w = differing_pair(rng, world.vendors, lambda x: world.names.vendors[x.name][0])
    x, y = differing_pair(rng, world.people, lambda person: person.city)
    i, j = rng.sample(world.incidents, 2)
    seats = world.names.vendors
    return [
        *rows,
        question("person", f"Who leads Project {p.name}, and who leads Project {q.name}?", "conjunction",
                 [charter_id(p), charter_id(q)], [p.lead.name, q.lead.name]),
        question("vendor city", f"Where are {v.name} and {w.name} headquartered?", "conjunction",
                 [vendor_id(v.name), vendor_id(w.name)], [seats[v.name][0], seats[w.name][0]]),
        question("office city", f"Which offices do {x.name} and {y.name} work from?", "conjunction",
                 [x.doc_id, y.doc_id], [x.city, y.city]),
        question("cause", f"What caused {i.number}, and what caused {j.number}?", "conjunction", [i.doc_id, j.doc_id],
                 [i.cause.split(" ", 1)[1], j.cause.split(" ", 1)[1]]),
    ]  # fmt: skip


def single_questions(world: World, rng: random.Random) -> list[dict[str, Any]]:
    """Controls: one document answers each (a similar name is the only trap)."""
    p, q = rng.sample(world.projects, 2)
    office, inc = rng.choice(world.offices), rng.choice(world.incidents)
    v, w = rng.sample(world.vendors, 2)
    twin = next(person for person in world.people if person.name == world.names.twin)
    return [
        question("person", f"Who leads Project {p.name}?", "single", [charter_id(p)], [p.lead.name]),
        question("hotel cap", "What is the nightly hotel cap in the 2024 travel policy?", "single",
                 ["travel-policy-2024"], [str(world.travel[2024][0])]),
        question("office opened", f"When did the {office.city} office open?", "single", [office_id(office.city)],
                 [str(office.opened)]),
        question("vendor city", f"Where is {v.name} headquartered?", "single", [vendor_id(v.name)],
                 [world.names.vendors[v.name][0]]),
        question("outage minutes", f"How long did incident {inc.number} last?", "single", [inc.doc_id],
                 [f"{inc.minutes} minutes"]),
        question("office city", f"Which office does {twin.name} work from?", "single", [twin.doc_id], [twin.city]),
        question("payment terms", f"What are the payment terms agreed with {w.name}?", "single", [vendor_id(w.name)],
                 [f"net {w.net_days}"]),
        question("vendor", f"Which supplier does Project {q.name} rely on?", "single", [charter_id(q)], [q.vendor]),
    ]  # fmt: skip


def build_questions(world: World, rng: random.Random, prefix: str = "mh") -> list[dict[str, Any]]:
    rows = (
        lead_bridges(world, rng)
        + other_bridges(world, rng)
        + comparison_questions(world, rng)
        + conjunction_questions(world, rng)
        + single_questions(world, rng)
    )
    rng.shuffle(rows)  # so that --limit N takes a mix of types
    values = value_lists(world)
    for number, row in enumerate(rows, start=1):
        row["id"] = f"{prefix}-{number:03d}"
        with_rivals(row, values)
    return rows


def build(
    seed: int = SEED, names: NameLists = DEV_NAMES, prefix: str = "mh"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(documents, questions), the same on every run with the same seed and lists."""
    rng = random.Random(seed)
    world = build_world(rng, names)
    documents = build_documents(world, rng)
    return documents, build_questions(world, rng, prefix)


def build_heldout(seed: int = HELDOUT_SEED) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The held-out set: the held-out company's lists, its own seed, question ids `ho-NNN`."""
    return build(seed, HELDOUT_NAMES, "ho")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    parser.add_argument("--heldout", action="store_true", help="the held-out set (heldout/), not the dev set")
    parser.add_argument(
        "--seed", type=int, default=None, help=f"another seed (default {SEED}, held-out {HELDOUT_SEED})"
    )
    parser.add_argument("--out", type=Path, default=None, help="write here instead (default: this folder or heldout/)")
    args = parser.parse_args(argv)
    if args.heldout:
        documents, questions_rows = build_heldout(args.seed if args.seed is not None else HELDOUT_SEED)
    else:
        documents, questions_rows = build(args.seed if args.seed is not None else SEED)
    folder = args.out or (HELDOUT_DIR if args.heldout else HERE)
    corpus, questions = render(documents), render(questions_rows)
    corpus_path, questions_path = folder / "corpus.jsonl", folder / "questions.jsonl"
    if args.check:
        same = corpus_path.read_text(encoding="utf-8") == corpus and questions_path.read_text("utf-8") == questions
        print("up to date" if same else "differs: run benchmarks/multihop/build_dataset.py", file=sys.stderr)
        return 0 if same else 1
    folder.mkdir(parents=True, exist_ok=True)
    corpus_path.write_text(corpus, encoding="utf-8")
    questions_path.write_text(questions, encoding="utf-8")
    print(f"{folder}: {corpus.count(chr(10))} documents, {questions.count(chr(10))} questions", file=sys.stderr)
    return 0


def render(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


if __name__ == "__main__":
    sys.exit(main())
