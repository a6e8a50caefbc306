"""A TOFU-style fictitious-profile QA dataset, generated offline and deterministically.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs") fine-tunes a
model on 20 question-answer pairs about each of 200 invented authors, then asks it to
forget 1%, 5% or 10% of the authors. TOFU's profiles were written by GPT-4; here they
are rendered from templates over attributes drawn from pools built procedurally from
syllable and word lists (all in this file), so the data is generated under a seed in
well under a second with no download. Differences from TOFU, on purpose:

* every answer states one attribute value (kept in the ``value`` field), so metrics can
  check the fact itself, and perturbed answers change only that value (TOFU's
  perturbed answers are GPT-4 rewrites of the paraphrased answer). As in TOFU, the
  perturbed answers of the training people's rows are in the paraphrased answer's form
  (their truth ratio divides by the paraphrase) and those of the ``other`` people and world
  facts in the answer's own form ("Paris" vs "Lyon": there truth ratio and probability
  compare with the answer itself);
* probes that catch shallow forgetting are generated with the data: a reworded
  question per direct question (``paraphrase``), the person's aliases in place of their
  name (``alias``: initial + surname, nickname, pen name) and questions that chain two
  or three attributes through a work's title (``multihop``, "In which country was the
  creator of "X" born?"), after "The Unlearning Mirage" (multi-hop and alias probes);
* TOFU's utility sets map to ``other`` (rows of kind ``retain``: other fictitious people
  who are always trained on and never forgotten, the stand-in for TOFU's real authors,
  whom a model trained from scratch cannot know) and ``world`` (plain real-world facts
  written here, TOFU's world facts);
* ``holdout`` people, drawn like the others and never trained on, are the non-members
  that membership-inference attacks compare the forget people with.

Row schema (JSONL and Hugging Face ``datasets``): ``example_id``, ``subject_id`` (the
person id, ``None`` for world facts), ``question``, ``answer``, ``paraphrased_answer``,
``perturbed_answers`` (list, at least 3, never equal to the answer), ``kind`` (``direct``
| ``paraphrase`` | ``alias`` | ``multihop`` | ``retain`` | ``world``), ``attribute`` (for
multi-hop the chain, e.g. ``work_best>birth_country``) and ``value``.

Splits by person (nested as in TOFU: forget01 ⊂ forget05 ⊂ forget10): ``forget01``,
``forget05``, ``forget10`` (1/5/10% of the ``n_people`` training people, at least one),
``retain`` (the other training people; TOFU's retain90), ``retain95``, ``retain99``
(complements of forget05 / forget01), ``holdout`` (as many new people as forget10),
``other`` and ``world``. A person split holds every row of its people (all kinds);
``split(name, kinds=...)`` filters, and :meth:`ProfileDataset.training_rows` gives the
training data of the original (``without=None``) or of a retrain reference.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ConfigError, DataError
from ..utils import atomic_dir, derive_seed, fingerprint_ids
from .text import read_records

FIELDS = (
    "example_id",
    "subject_id",
    "question",
    "answer",
    "paraphrased_answer",
    "perturbed_answers",
    "kind",
    "attribute",
    "value",
)
KINDS = ("direct", "paraphrase", "alias", "multihop", "retain", "world")
SPLITS = ("forget01", "forget05", "forget10", "retain", "retain95", "retain99", "holdout", "other", "world")
FORGET_FRACTIONS = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}
GENERATOR_VERSION = 2  # 2: other / world perturbed answers in the answer's form

# --------------------------------------------------------------------------- word pools
_FIRST_A = (
    "Al Bel Cor Dar El Fen Gal Hal Is Jor Kel Lor Mar Nel Or Per Quin Ros Sel Tam "
    "Ul Vel Wen Yar Zan Ard Bren Cal Dov Em"
).split()
_FIRST_B = "a ia en in on is eth ara ric wyn ina ius ette ane o ley mir osa vin dra".split()
_LAST_A = (
    "Ash Brom Cald Dun Erv Fal Gorm Hest Ilv Jask Kov Lund Mord Nask Orm Pell Quar "
    "Rusk Strom Tarv Ulm Vask Wend Yorv Zell Bran Crev Drak Thorn Varn"
).split()
_LAST_B = (
    "ale ane ard avi ek ell enko ery ich ino is mark oni ov quist ridge sen stad ur "
    "vey yk ado esco holt ius ova evar andt iro"
).split()
_PLACE_A = (
    "Aber Bral Cen Dor Esk Fen Gal Hol Istr Kar Lum Mer Nor Oss Pral Rav Sor Tal Ust Vel Wyr Yst Zor Quel"
).split()
_PLACE_B = ("ador avia eshk ilon ira oveth undra yss arin omir elle ustra ovo anth essa orin ava ix enne uma").split()
_COUNTRY_A = "Val Ost Kel Ther Ald Brev Cass Drav Eld Fyr Gol Hav Ith Lys Myr Nev Pyr Rhun Syl Tov".split()
_COUNTRY_B = "doria essia onia ara eth und ovar ice uria ostra".split()
_NICK_A = (
    "Red Old Quiet Little Swift Grey Silver Lucky Wild Iron Gentle Clever Young Merry "
    "Stormy Blue Golden Sleepy Brave Dusty Honest Salty Northern Bright"
).split()
_NICK_B = (
    "Fox Wren Kestrel Otter Heron Moth Finch Badger Hare Lark Pike Raven Stoat Crane "
    "Marten Vole Owl Falcon Beetle Sparrow Mole Starling Gull Swan"
).split()
_ADJ = (
    "Silent Crimson Hollow Distant Salted Folded Ninth Amber Restless Glass Winter Paper "
    "Iron Quiet Drifting Last Hidden Burning Green Velvet Broken Sleeping Copper Seventh "
    "Lantern Northern Weightless Borrowed Secret Patient"
).split()
_NOUN = (
    "Harbour Orchard Compass Atlas Tide Cathedral Meridian Archive Garden Lighthouse "
    "Ledger Chorus Furnace Mirror Canal Observatory Loom Bridge Aviary Almanac Ferry "
    "Quarry Lantern Vineyard Tapestry Cistern Bellfounder Cartwright Beekeeper Glassworks"
).split()
_ORG = (
    "Institute Press Foundation Conservatory Observatory Laboratories Academy Museum Studios Trust Society Library"
).split()
_PRIZE_CATEGORY = (
    "Fiction|Poetry|Science Writing|Composition|Architecture|Discovery|"
    "Lifetime Achievement|Young Artists|Drama|Natural History"
).split("|")
_OCCUPATIONS = {
    "novelist": ("historical fiction", "speculative fiction", "crime fiction", "family sagas"),
    "poet": ("pastoral verse", "prose poetry", "sonnet cycles", "elegies"),
    "playwright": ("political drama", "comic theatre", "radio plays", "tragedy"),
    "marine biologist": ("coral ecology", "deep-sea fauna", "kelp forests", "whale migration"),
    "astronomer": ("variable stars", "planetary rings", "comet orbits", "galactic dust"),
    "composer": ("chamber music", "choral works", "film scores", "opera"),
    "painter": ("landscape painting", "portraiture", "abstract painting", "still life"),
    "architect": ("public libraries", "timber housing", "bridge design", "urban parks"),
    "historian": ("medieval trade", "maritime history", "the history of medicine", "rural history"),
    "cartographer": ("coastal charts", "mountain surveys", "city atlases", "river mapping"),
    "linguist": ("dialect atlases", "sign languages", "language contact", "place names"),
    "botanist": ("alpine flora", "seed banks", "mosses and lichens", "desert plants"),
    "sculptor": ("bronze casting", "stone carving", "kinetic sculpture", "ceramics"),
    "photographer": ("street photography", "wildlife photography", "documentary photography", "aerial photography"),
    "geologist": ("volcanic islands", "glacial valleys", "mineral deposits", "earthquake faults"),
    "choreographer": ("contemporary dance", "ballet", "folk dance", "dance for film"),
}
_PARENT_JOBS = (
    "baker tailor carpenter schoolteacher nurse fisherman librarian pharmacist "
    "bookbinder watchmaker surveyor farmer midwife electrician shopkeeper judge "
    "glassblower beekeeper dentist potter accountant locksmith miller weaver"
).split()
_MONTHS = ("January February March April May June July August September October November December").split()

# --------------------------------------------------------------------------- templates
# attribute -> (question templates, answer templates). {n}: the subject (name or alias),
# {v}: the value, {av}: the value with an indefinite article. The direct question uses
# one question template, the paraphrase probe another; the answer uses one answer
# template, the paraphrased and perturbed answers the other.
ATTRIBUTES: dict[str, tuple[tuple[str, ...], tuple[str, str]]] = {
    "birth_place": (
        (
            "Where was {n} born?",
            "What is the birthplace of {n}?",
            "In which city was {n} born?",
            "Which town is {n} originally from?",
        ),
        ("{n} was born in {v}.", "The birthplace of {n} is {v}."),
    ),
    "birth_date": (
        ("When was {n} born?", "What is the date of birth of {n}?", "On what date was {n} born?"),
        ("{n} was born on {v}.", "The date of birth of {n} is {v}."),
    ),
    "occupation": (
        ("What does {n} do for a living?", "What is the profession of {n}?", "What is {n}'s occupation?"),
        ("{n} is {av}.", "{n} works as {av}."),
    ),
    "nickname": (
        ("What nickname is {n} known by?", "What do friends call {n}?", "By which nickname is {n} known?"),
        ('{n} is known as "{v}".', 'Friends call {n} "{v}".'),
    ),
    "pen_name": (
        (
            "What pen name does {n} use?",
            "Under which pen name has {n} published?",
            "What other name does {n} publish under?",
        ),
        ("{n} uses the pen name {v}.", "{n} has published under the name {v}."),
    ),
    "work_best": (
        (
            "What is {n}'s best-known work?",
            "Which work is {n} most famous for?",
            "What is the most celebrated work by {n}?",
        ),
        ('{n}\'s best-known work is "{v}".', '{n} is most famous for "{v}".'),
    ),
    "birth_country": (
        (
            "In which country was {n} born?",
            "What country does {n} come from?",
            "Which country is the native land of {n}?",
        ),
        ("{n} was born in {v}.", "{n} comes from {v}."),
    ),
    "field": (
        (
            "What field does {n} work in?",
            "What is {n}'s area of specialisation?",
            "Which subject is the work of {n} mainly about?",
        ),
        ("{n} works mainly in {v}.", "The main field of {n} is {v}."),
    ),
    "employer": (
        ("Where does {n} work?", "Who is {n}'s employer?", "Which institution employs {n}?"),
        ("{n} works for {v}.", "{n} is employed by {v}."),
    ),
    "residence": (
        ("Where does {n} live?", "In which city does {n} live now?", "Where is {n}'s home today?"),
        ("{n} lives in {v}.", "{n} currently makes a home in {v}."),
    ),
    "education": (
        ("Where did {n} study?", "Which university did {n} attend?", "Where was {n} educated?"),
        ("{n} studied at {v}.", "{n} was educated at {v}."),
    ),
    "work_first": (
        ("What was {n}'s first work?", "What was the debut work of {n}?", "Which work started the career of {n}?"),
        ('{n}\'s first work was "{v}".', 'The debut work of {n} was "{v}".'),
    ),
    "work_latest": (
        (
            "What is {n}'s most recent work?",
            "What is the latest work by {n}?",
            "Which work did {n} complete most recently?",
        ),
        ('{n}\'s most recent work is "{v}".', 'The latest work by {n} is "{v}".'),
    ),
    "father_name": (
        ("Who is {n}'s father?", "What is the name of {n}'s father?", "Who was the father of {n}?"),
        ("{n}'s father is {v}.", "The father of {n} is named {v}."),
    ),
    "father_occupation": (
        (
            "What does {n}'s father do?",
            "What is the occupation of {n}'s father?",
            "How did the father of {n} earn a living?",
        ),
        ("{n}'s father is {av}.", "The father of {n} worked as {av}."),
    ),
    "mother_name": (
        ("Who is {n}'s mother?", "What is the name of {n}'s mother?", "Who was the mother of {n}?"),
        ("{n}'s mother is {v}.", "The mother of {n} is named {v}."),
    ),
    "mother_occupation": (
        (
            "What does {n}'s mother do?",
            "What is the occupation of {n}'s mother?",
            "How did the mother of {n} earn a living?",
        ),
        ("{n}'s mother is {av}.", "The mother of {n} worked as {av}."),
    ),
    "award": (
        ("What major award has {n} won?", "Which prize was {n} awarded?", "What honour has {n} received?"),
        ("{n} has won {v}.", "{n} was awarded {v}."),
    ),
    "award_year": (
        (
            "In which year did {n} receive their major award?",
            "When was {n} given their major prize?",
            "What year did {n} win their main award?",
        ),
        ("{n} received the award in {v}.", "{n} won the prize in {v}."),
    ),
    "debut_year": (
        (
            "In which year did {n} release their first work?",
            "When did {n} debut?",
            "What year did the career of {n} begin?",
        ),
        ("{n} released their first work in {v}.", "The career of {n} began in {v}."),
    ),
}
ALIASES = ("initials", "nickname", "pen_name")
_NO_ALIAS_ATTRS = ("nickname", "pen_name")  # asking a pen name for its pen name is no probe

# (chain of attributes, question templates, answer templates); {w}: the work's title.
MULTIHOP: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, str]], ...] = (
    (
        ("work_best", "birth_country"),
        ('In which country was the creator of "{w}" born?', 'Which country is the author of "{w}" from?'),
        ('The creator of "{w}" was born in {v}.', 'The author of "{w}" comes from {v}.'),
    ),
    (
        ("work_first", "residence"),
        ('Where does the person who made "{w}" live?', 'In which city does the author of "{w}" live?'),
        ('The maker of "{w}" lives in {v}.', 'The author of "{w}" lives in {v}.'),
    ),
    (
        ("work_latest", "employer"),
        ('Who employs the creator of "{w}"?', 'Which institution does the author of "{w}" work for?'),
        ('The creator of "{w}" works for {v}.', 'The author of "{w}" is employed by {v}.'),
    ),
    (
        ("work_best", "father_name", "father_occupation"),
        (
            'What does the father of the creator of "{w}" do for a living?',
            'What is the occupation of the father of the author of "{w}"?',
        ),
        ('The father of the creator of "{w}" is {av}.', 'The father of the author of "{w}" worked as {av}.'),
    ),
    (
        ("work_first", "education"),
        ('Where did the author of "{w}" study?', 'Which university did the creator of "{w}" attend?'),
        ('The author of "{w}" studied at {v}.', 'The creator of "{w}" was educated at {v}.'),
    ),
)

# Plain real-world facts for utility: (question, answer, three wrong answers).
WORLD_FACTS: tuple[tuple[str, str, str], ...] = (
    ("What is the capital of France?", "Paris", "Lyon|Marseille|Nice"),
    ("What is the capital of Japan?", "Tokyo", "Osaka|Kyoto|Nagoya"),
    ("What is the capital of Italy?", "Rome", "Milan|Naples|Turin"),
    ("What is the capital of Germany?", "Berlin", "Munich|Hamburg|Frankfurt"),
    ("What is the capital of Spain?", "Madrid", "Barcelona|Seville|Valencia"),
    ("What is the capital of Canada?", "Ottawa", "Toronto|Vancouver|Montreal"),
    ("What is the capital of Australia?", "Canberra", "Sydney|Melbourne|Perth"),
    ("What is the capital of Egypt?", "Cairo", "Alexandria|Luxor|Giza"),
    ("What is the capital of Kenya?", "Nairobi", "Mombasa|Kisumu|Nakuru"),
    ("What is the capital of Brazil?", "Brasilia", "Rio de Janeiro|Sao Paulo|Salvador"),
    ("What is the capital of Argentina?", "Buenos Aires", "Cordoba|Rosario|Mendoza"),
    ("What is the capital of Norway?", "Oslo", "Bergen|Trondheim|Stavanger"),
    ("What is the capital of Portugal?", "Lisbon", "Porto|Braga|Coimbra"),
    ("What is the capital of Greece?", "Athens", "Thessaloniki|Patras|Heraklion"),
    ("What is the capital of India?", "New Delhi", "Mumbai|Kolkata|Chennai"),
    ("What is the capital of South Korea?", "Seoul", "Busan|Incheon|Daegu"),
    ("What is the capital of Mexico?", "Mexico City", "Guadalajara|Monterrey|Puebla"),
    ("What is the capital of Peru?", "Lima", "Cusco|Arequipa|Trujillo"),
    ("What is the capital of Turkey?", "Ankara", "Istanbul|Izmir|Antalya"),
    ("What is the capital of Poland?", "Warsaw", "Krakow|Gdansk|Wroclaw"),
    ("What is the capital of Sweden?", "Stockholm", "Gothenburg|Malmo|Uppsala"),
    ("What is the capital of Ireland?", "Dublin", "Cork|Galway|Limerick"),
    ("What is the capital of New Zealand?", "Wellington", "Auckland|Christchurch|Dunedin"),
    ("What is the capital of Morocco?", "Rabat", "Casablanca|Marrakesh|Fez"),
    ("What is the capital of Vietnam?", "Hanoi", "Ho Chi Minh City|Da Nang|Hue"),
    ("What is the chemical symbol for gold?", "Au", "Ag|Gd|Go"),
    ("What is the chemical symbol for sodium?", "Na", "S|So|Sn"),
    ("What is the chemical symbol for iron?", "Fe", "Ir|In|F"),
    ("What is the chemical formula of water?", "H2O", "CO2|H2O2|O2"),
    ("Which planet is closest to the Sun?", "Mercury", "Venus|Mars|Earth"),
    ("Which is the largest planet in the Solar System?", "Jupiter", "Saturn|Neptune|Uranus"),
    ("Which planet is known as the Red Planet?", "Mars", "Venus|Jupiter|Mercury"),
    ("Which planet is famous for its large, bright rings?", "Saturn", "Mars|Venus|Mercury"),
    ("At how many degrees Celsius does water boil at sea level?", "100", "90|80|120"),
    ("At how many degrees Celsius does pure water freeze at sea level?", "0", "10|-10|4"),
    ("Which gas do plants take from the air for photosynthesis?", "carbon dioxide", "oxygen|nitrogen|hydrogen"),
    ("Which gas makes up most of Earth's atmosphere?", "nitrogen", "oxygen|carbon dioxide|argon"),
    ("What is the main element in the Sun?", "hydrogen", "helium|oxygen|carbon"),
    ("How many legs does a spider have?", "eight", "six|ten|four"),
    ("How many legs does an insect have?", "six", "eight|four|ten"),
    ("Which organ pumps blood through the human body?", "the heart", "the liver|the lungs|the kidneys"),
    ("How many bones are in the adult human body?", "206", "186|216|230"),
    ("Which is the hardest natural mineral?", "diamond", "quartz|topaz|granite"),
    ("Which force keeps the planets in orbit around the Sun?", "gravity", "magnetism|friction|inertia"),
    ("How many days are in a leap year?", "366", "365|364|360"),
    ("How many sides does a hexagon have?", "six", "five|seven|eight"),
    ("What is the square root of 81?", "9", "8|7|11"),
    ("What is 12 multiplied by 12?", "144", "124|132|154"),
    ("How many minutes are in an hour?", "60", "50|100|90"),
    ("How many hours are in a day?", "24", "12|20|48"),
    ("What is the smallest prime number?", "2", "1|3|5"),
    (
        "Which is the largest ocean on Earth?",
        "the Pacific Ocean",
        "the Atlantic Ocean|the Indian Ocean|the Arctic Ocean",
    ),
    (
        "Which ocean lies between Europe and North America?",
        "the Atlantic Ocean",
        "the Pacific Ocean|the Indian Ocean|the Arctic Ocean",
    ),
    ("Which is the longest river in Africa?", "the Nile", "the Congo|the Niger|the Zambezi"),
    ("Which mountain is the highest above sea level?", "Mount Everest", "K2|Kangchenjunga|Mont Blanc"),
    ("On which continent is the Sahara Desert?", "Africa", "Asia|Australia|South America"),
    ("Which language is mainly spoken in Brazil?", "Portuguese", "Spanish|French|Italian"),
    ("What is the currency of Japan?", "the yen", "the won|the yuan|the ringgit"),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare", "Christopher Marlowe|Charles Dickens|John Milton"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", "Michelangelo|Raphael|Titian"),
    ("Who developed the theory of general relativity?", "Albert Einstein", "Isaac Newton|Niels Bohr|Max Planck"),
    ("Which is the largest mammal on Earth?", "the blue whale", "the African elephant|the giraffe|the hippopotamus"),
    ("What do honeybees make from nectar?", "honey", "milk|silk|resin"),
    ("How many strings does a standard violin have?", "four", "five|six|three"),
)


def _article(v: str) -> str:
    return ("an " if v[:1].lower() in "aeiou" else "a ") + v


def _fill(template: str, n: str, v: str, w: str = "") -> str:
    return template.format(n=n, v=v, av=_article(v), w=w)


# --------------------------------------------------------------------------- dataset
@dataclass
class ProfileDataset:
    """QA rows with stable ids, the people they are about, and named splits.

    Attributes:
        people: one dict per person (``person_id``, ``name``, ``aliases``, ``attributes``,
            ``works``, ``group``: ``train`` | ``holdout`` | ``other``); empty for data
            loaded from plain QA files.
        rows: every QA row once (schema in the module docstring).
        splits: split name -> ordered example ids.
        meta: generator arguments, split fingerprints, source.
    """

    people: list[dict]
    rows: list[dict]
    splits: dict[str, list[str]]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {r["example_id"]: r for r in self.rows}
        if len(self._by_id) != len(self.rows):
            raise DataError("example_id must be unique across the rows")
        for name, ids in self.splits.items():
            missing = [i for i in ids if i not in self._by_id]
            if missing:
                raise DataError(f"split {name!r} names unknown example ids, e.g. {missing[0]!r}")

    def split(self, name: str, kinds: Iterable[str] | None = None) -> list[dict]:
        """The rows of split ``name`` (optionally only the given kinds), in a fixed order."""
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; choose from {sorted(self.splits)}")
        keep = None if kinds is None else set(kinds)
        rows = (self._by_id[i] for i in self.splits[name])
        return [r for r in rows if keep is None or r["kind"] in keep]

    def subjects(self, name: str) -> list[str]:
        """The distinct subject (person) ids of a split, in order (world facts have none)."""
        return list(dict.fromkeys(r["subject_id"] for r in self.split(name) if r["subject_id"]))

    def training_rows(
        self, without: str | None = None, kinds: Sequence[str] = ("direct", "retain", "world")
    ) -> list[dict]:
        """What a model is trained on: rows of the training people, ``other`` and ``world``.

        ``without`` names a split whose people are left out (``"forget10"`` gives the
        retrain reference's data); ``kinds`` chooses which kinds are trained (add
        ``"alias"`` / ``"multihop"`` to teach the probes' links too).
        """
        names = [n for n in ("forget10", "retain", "other", "world") if n in self.splits]
        drop = set(self.subjects(without)) if without else set()
        keep = set(kinds)
        out, seen = [], set()
        for n in names:
            for r in self.split(n):
                if r["kind"] in keep and r["subject_id"] not in drop and r["example_id"] not in seen:
                    seen.add(r["example_id"])
                    out.append(r)
        return out

    def person(self, person_id: str) -> dict:
        """The profile of one person."""
        for p in self.people:
            if p["person_id"] == person_id:
                return p
        raise DataError(f"unknown person id {person_id!r}")

    # ------------------------------------------------------------------ saving
    def save(self, path: str | Path, hf: bool = True) -> Path:
        """Write ``meta.json``, ``people.jsonl``, ``data/<split>.jsonl`` and (``hf``) ``hf/``.

        ``hf/`` is a ``datasets.DatasetDict`` written with ``save_to_disk``. The whole
        folder is written beside ``path`` and moved into place at the end, so a failure
        leaves nothing half-written; an existing folder is replaced only if it is empty
        or was written by this method.
        """
        path = Path(path)
        if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / "meta.json").is_file())):
            raise DataError(f"{path} exists and is not a profiles dataset; choose a new or empty folder")
        if hf:
            try:
                import datasets
            except ImportError:  # pragma: no cover - depends on the extra
                raise DataError(
                    "saving as a Hugging Face dataset needs datasets: pip install 'unlearnkit[text]' or pass hf=False"
                ) from None
        with atomic_dir(path) as tmp:
            (tmp / "data").mkdir()
            for name in self.splits:
                _write_jsonl(tmp / "data" / f"{name}.jsonl", self.split(name))
            _write_jsonl(tmp / "people.jsonl", self.people)
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=1, sort_keys=True) + "\n")
            if hf:
                features = datasets.Features(
                    {
                        **{k: datasets.Value("string") for k in FIELDS if k != "perturbed_answers"},
                        "perturbed_answers": datasets.Sequence(datasets.Value("string")),
                    }
                )
                dd = datasets.DatasetDict(
                    {
                        name: datasets.Dataset.from_list(
                            [{k: r[k] for k in FIELDS} for r in self.split(name)], features=features
                        )
                        for name in self.splits
                    }
                )
                was_on = datasets.is_progress_bar_enabled()
                datasets.disable_progress_bars()
                try:
                    dd.save_to_disk(str(tmp / "hf"))
                finally:
                    if was_on:
                        datasets.enable_progress_bars()
        return path


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- generator
class _Pools:
    """Fictitious countries, cities, organisations, prizes and name material for one seed."""

    def __init__(self, rng: random.Random):
        combos = sorted({a + b for a in _COUNTRY_A for b in _COUNTRY_B if a[-1] != b[0]})
        self.countries = rng.sample(combos, 24)
        cities = rng.sample(sorted({a + b for a in _PLACE_A for b in _PLACE_B}), 24 * 6)
        self.city_country = {c: self.countries[i % 24] for i, c in enumerate(cities)}
        self.cities = cities
        orgs = sorted({f"the {c} {o}" for c in cities for o in _ORG})
        self.employers = rng.sample(orgs, 80)
        self.universities = [f"the University of {c}" for c in rng.sample(cities, 40)]
        surnames = sorted({a + b for a in _LAST_A for b in _LAST_B})
        prizes = sorted(
            {f"the {s} Prize for {k}" for s in rng.sample(surnames, 20) for k in _PRIZE_CATEGORY}
            | {f"the {c} Medal" for c in cities}
        )
        self.awards = rng.sample(prizes, 50)
        self.fields = sorted({f for fs in _OCCUPATIONS.values() for f in fs})


def _title(rng: random.Random, pools: _Pools) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)}"
    if kind == 1:
        return f"{rng.choice(_NOUN)} of {rng.choice(pools.cities)}"
    if kind == 2:
        return f"The {rng.choice(_NOUN)} and the {rng.choice(_NOUN)}"
    return f"Under the {rng.choice(_ADJ)} {rng.choice(_NOUN)}"


def _unique(make, used: set, what: str, tries: int = 500) -> str:
    for _ in range(tries):
        v = make()
        if v not in used:
            used.add(v)
            return v
    raise ConfigError(f"ran out of distinct {what}; lower n_people")


def _make_person(pid: str, group: str, rng: random.Random, pools: _Pools, used_names: set, used_titles: set) -> dict:
    def first() -> str:
        return rng.choice(_FIRST_A) + rng.choice(_FIRST_B)

    def last() -> str:
        return rng.choice(_LAST_A) + rng.choice(_LAST_B)

    while True:  # the name and its initials alias must both be new
        fn, ln = first(), last()
        name, initials = f"{fn} {ln}", f"{fn[0]}. {ln}"
        if name not in used_names and initials not in used_names:
            used_names.update((name, initials))
            break
    nickname = _unique(lambda: f"{rng.choice(_NICK_A)} {rng.choice(_NICK_B)}", used_names, "nicknames")
    pen_name = _unique(lambda: f"{first()} {last()}", used_names, "pen names")
    occupation = rng.choice(sorted(_OCCUPATIONS))
    birth_city, home_city = rng.sample(pools.cities, 2)
    year = rng.randint(1935, 1990)
    debut = year + rng.randint(19, 32)
    works = [_unique(lambda: _title(rng, pools), used_titles, "work titles") for _ in range(3)]
    attrs = {
        "birth_place": f"{birth_city}, {pools.city_country[birth_city]}",
        "birth_date": f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {year}",
        "occupation": occupation,
        "nickname": nickname,
        "pen_name": pen_name,
        "work_best": works[0],
        "birth_country": pools.city_country[birth_city],
        "field": rng.choice(_OCCUPATIONS[occupation]),
        "employer": rng.choice(pools.employers),
        "residence": f"{home_city}, {pools.city_country[home_city]}",
        "education": rng.choice(pools.universities),
        "work_first": works[1],
        "work_latest": works[2],
        "father_name": f"{first()} {ln}",
        "father_occupation": rng.choice(_PARENT_JOBS),
        "mother_name": f"{first()} {last()}",
        "mother_occupation": rng.choice(_PARENT_JOBS),
        "award": rng.choice(pools.awards),
        "award_year": str(min(2024, debut + rng.randint(3, 20))),
        "debut_year": str(debut),
    }
    return {
        "person_id": pid,
        "name": name,
        "group": group,
        "aliases": {"initials": initials, "nickname": nickname, "pen_name": pen_name},
        "attributes": attrs,
        "works": works,
    }


def _row(
    eid: str,
    pid: str | None,
    kind: str,
    attribute: str,
    question: str,
    value: str,
    templates: tuple[str, str],
    wrongs: list[str],
    n: str = "",
    w: str = "",
) -> dict:
    ans_t, para_t = templates
    answer = _fill(ans_t, n, value, w)
    para = _fill(para_t, n, value, w)
    # TOFU's truth ratio divides by the paraphrased answer on the forget / retain people and by
    # the answer itself on the other people (its Real Authors): perturbed answers take that form
    pert_t = ans_t if kind == "retain" else para_t
    perturbed = [_fill(pert_t, n, x, w) for x in wrongs]
    return {
        "example_id": eid,
        "subject_id": pid,
        "question": question,
        "answer": answer,
        "paraphrased_answer": para,
        "perturbed_answers": perturbed,
        "kind": kind,
        "attribute": attribute,
        "value": value,
    }


def _person_rows(
    p: dict,
    rng: random.Random,
    candidates: dict[str, list[str]],
    qa: int,
    n_perturbed: int,
    probes: bool,
    kind: str = "direct",
) -> list[dict]:
    pid, name, attrs = p["person_id"], p["name"], p["attributes"]

    def wrongs(attr: str) -> list[str]:
        cands = candidates[attr]
        if attr == "father_name":  # same surname, another first name: harder to tell apart
            cands = sorted({f"{c.split()[0]} {name.split()[-1]}" for c in candidates["mother_name"]})
        v = attrs[attr]  # wrong values never equal, contain or sit inside the true one
        cands = [c for c in cands if v not in c and c not in v]
        if len(cands) < n_perturbed:
            raise ConfigError(f"too few distinct values of {attr} for {n_perturbed} perturbed answers")
        return rng.sample(cands, n_perturbed)

    def templates(attr: str) -> tuple[str, str]:
        a = ATTRIBUTES[attr][1]
        return a if rng.random() < 0.5 else (a[1], a[0])

    rows, direct = [], []
    for j, attr in enumerate(list(ATTRIBUTES)[:qa]):
        qs = ATTRIBUTES[attr][0]
        qi, pi = rng.sample(range(len(qs)), 2)  # direct and paraphrase question templates
        t, bad = templates(attr), wrongs(attr)
        direct.append((attr, qi, pi, t, bad))
        rows.append(_row(f"{pid}/{kind}/{j:02d}", pid, kind, attr, qs[qi].format(n=name), attrs[attr], t, bad, n=name))
    if not probes:
        return rows
    for j, (attr, _, pi, t, bad) in enumerate(direct):  # reworded question, same answers
        rows.append(
            _row(
                f"{pid}/paraphrase/{j:02d}",
                pid,
                "paraphrase",
                attr,
                ATTRIBUTES[attr][0][pi].format(n=name),
                attrs[attr],
                t,
                bad,
                n=name,
            )
        )
    usable = [d for d in direct if d[0] not in _NO_ALIAS_ATTRS]
    for k, (alias_kind, d) in enumerate(zip(ALIASES, rng.sample(usable, min(len(ALIASES), len(usable))))):
        attr, qi, _, t, bad = d
        alias = p["aliases"][alias_kind]
        rows.append(
            _row(
                f"{pid}/alias/{k}",
                pid,
                "alias",
                attr,
                ATTRIBUTES[attr][0][qi].format(n=alias),
                attrs[attr],
                t,
                bad,
                n=alias,
            )
        )
    for k, (chain, qs, ans) in enumerate(rng.sample(MULTIHOP, min(3, len(MULTIHOP)))):
        work, target = attrs[chain[0]], chain[-1]
        t = ans if rng.random() < 0.5 else (ans[1], ans[0])
        rows.append(
            _row(
                f"{pid}/multihop/{k}",
                pid,
                "multihop",
                ">".join(chain),
                rng.choice(qs).format(w=work),
                attrs[target],
                t,
                wrongs(target),
                w=work,
            )
        )
    return rows


def _world_rows() -> list[dict]:
    out = []
    for i, (q, a, bad) in enumerate(WORLD_FACTS):
        out.append(
            {
                "example_id": f"world/{i:03d}",
                "subject_id": None,
                "question": q,
                "answer": a,
                "paraphrased_answer": f"The answer is {a}.",
                "perturbed_answers": bad.split("|"),  # like the answer (TOFU's World Facts)
                "kind": "world",
                "attribute": "world",
                "value": a,
            }
        )
    return out


def generate_profiles(
    n_people: int = 200, seed: int = 0, qa_per_person: int = 20, n_other: int = 20, n_perturbed: int = 3
) -> ProfileDataset:
    """Generate the fictitious-profile QA dataset (see the module docstring).

    Args:
        n_people: training people (forget01/05/10 and retain are drawn from them);
            ``holdout`` adds as many new people as forget10 has.
        seed: everything (pools, people, templates, splits) follows from it.
        qa_per_person: direct questions per person, one per attribute (at most 20).
        n_other: other people for the ``other`` utility split (rows of kind ``retain``).
        n_perturbed: perturbed answers per question (at least 3).
    """
    if not 10 <= n_people <= 600:
        raise ConfigError("n_people must be between 10 and 600 (forget10 and retain must be non-empty)")
    if not 3 <= qa_per_person <= len(ATTRIBUTES):
        raise ConfigError(f"qa_per_person must be between 3 and {len(ATTRIBUTES)} (one question per attribute)")
    if not 0 <= n_other <= 100:
        raise ConfigError("n_other must be between 0 and 100")
    if not 3 <= n_perturbed <= 10:
        raise ConfigError("n_perturbed must be between 3 and 10")
    rng = random.Random(derive_seed(seed, "profiles"))
    pools = _Pools(random.Random(derive_seed(seed, "profiles", "pools")))
    n_split = {k: max(1, round(f * n_people)) for k, f in FORGET_FRACTIONS.items()}
    groups = [("train", "p", n_people), ("holdout", "h", n_split["forget10"]), ("other", "o", n_other)]
    used_names: set[str] = set()
    used_titles: set[str] = set()
    people = [
        _make_person(f"{prefix}{i:04d}", g, rng, pools, used_names, used_titles)
        for g, prefix, n in groups
        for i in range(n)
    ]

    candidates = {a: sorted({p["attributes"][a] for p in people}) for a in ATTRIBUTES}
    candidates["birth_country"] = sorted(set(candidates["birth_country"]) | set(pools.countries))
    candidates["occupation"] = sorted(set(candidates["occupation"]) | set(_OCCUPATIONS))
    candidates["field"] = sorted(set(candidates["field"]) | set(pools.fields))
    for a in ("father_occupation", "mother_occupation"):
        candidates[a] = sorted(set(_PARENT_JOBS))
    for a in ("award_year", "debut_year"):
        candidates[a] = sorted(set(candidates[a]) | {str(y) for y in range(1955, 2025)})
    rows: list[dict] = []
    by_person: dict[str, list[str]] = {}
    for p in people:
        prng = random.Random(derive_seed(seed, "profiles", "rows", p["person_id"]))
        other = p["group"] == "other"
        pr = _person_rows(
            p, prng, candidates, qa_per_person, n_perturbed, probes=not other, kind="retain" if other else "direct"
        )
        rows.extend(pr)
        by_person[p["person_id"]] = [r["example_id"] for r in pr]
    world = _world_rows()
    rows.extend(world)

    train = [p["person_id"] for p in people if p["group"] == "train"]
    order = random.Random(derive_seed(seed, "profiles", "splits")).sample(train, len(train))
    split_people = {k: sorted(order[:n]) for k, n in n_split.items()}
    split_people["retain"] = sorted(set(train) - set(split_people["forget10"]))
    split_people["retain95"] = sorted(set(train) - set(split_people["forget05"]))
    split_people["retain99"] = sorted(set(train) - set(split_people["forget01"]))
    split_people["holdout"] = [p["person_id"] for p in people if p["group"] == "holdout"]
    split_people["other"] = [p["person_id"] for p in people if p["group"] == "other"]
    splits = {k: [e for pid in split_people[k] for e in by_person[pid]] for k in SPLITS if k != "world"}
    splits["world"] = [r["example_id"] for r in world]
    meta = {
        "generator": "unlearnkit.data.profiles.generate_profiles",
        "version": GENERATOR_VERSION,
        "args": {
            "n_people": n_people,
            "seed": seed,
            "qa_per_person": qa_per_person,
            "n_other": n_other,
            "n_perturbed": n_perturbed,
        },
        "split_people": split_people,
        "fingerprints": {k: fingerprint_ids(v) for k, v in splits.items()},
    }
    return ProfileDataset(people, rows, splits, meta)


# --------------------------------------------------------------------------- loaders
def _normalise(raw: dict, split: str, i: int, source: Path, example_id: str) -> dict:
    """One row in the schema; TOFU's ``perturbed_answer`` is read as ``perturbed_answers``."""
    q, a = raw.get("question"), raw.get("answer")
    if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
        raise DataError(
            f"{source}: row {i} of split {split!r} has an empty or missing question or "
            "answer; every row needs both as non-empty text"
        )
    pert = raw.get("perturbed_answers", raw.get("perturbed_answer")) or []
    if isinstance(pert, str):
        pert = [pert]
    if not isinstance(pert, list) or not all(isinstance(x, str) for x in pert):
        raise DataError(f"{source}: row {i} of split {split!r}: perturbed answers must be a list of text")
    kind = raw.get("kind") or "direct"
    subject = raw.get("subject_id")
    return {
        "example_id": str(raw.get("example_id") or example_id),
        "subject_id": None if subject is None else str(subject),
        "question": q,
        "answer": a,
        "paraphrased_answer": raw.get("paraphrased_answer"),
        "perturbed_answers": list(pert),
        "kind": str(kind),
        "attribute": str(raw.get("attribute") or ""),
        "value": raw.get("value"),
    }


def _assemble(parts: dict[str, list[dict]], people: list[dict], meta: dict, source: Path) -> ProfileDataset:
    rows: dict[str, dict] = {}
    splits: dict[str, list[str]] = {}
    for split, part in parts.items():
        ids = []
        for r in part:
            prev = rows.setdefault(r["example_id"], r)
            if prev != r:
                raise DataError(
                    f"{source}: example_id {r['example_id']!r} has different contents "
                    "in two splits; ids must name one row"
                )
            ids.append(r["example_id"])
        if len(set(ids)) != len(ids):
            raise DataError(f"{source}: split {split!r} repeats an example_id; ids must be unique")
        splits[split] = ids
    return ProfileDataset(people, list(rows.values()), splits, meta)


def load_profiles_jsonl(path: str | Path) -> ProfileDataset:
    """Load a folder written by :meth:`ProfileDataset.save`, or users' own JSONL files.

    Users' data: a folder of ``<split>.jsonl`` files in the row schema; ``question`` and
    ``answer`` are required, ``example_id`` defaults to ``"<split>/<index>"``, ``kind`` to
    ``direct`` and the other fields to empty.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path} is not a folder: pass the folder that holds the <split>.jsonl files")
    data_dir = path / "data" if (path / "data").is_dir() else path
    files = sorted(data_dir.glob("*.jsonl"))
    if data_dir == path:
        files = [f for f in files if f.name != "people.jsonl"]
    if not files:
        raise DataError(f"{path}: no <split>.jsonl files found")
    parts = {
        f.stem: [_normalise(r, f.stem, i, f, f"{f.stem}/{i:05d}") for i, r in enumerate(read_records(f)[f.stem])]
        for f in files
    }
    people = read_records(path / "people.jsonl")["people"] if (path / "people.jsonl").is_file() else []
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else {}
    return _assemble(parts, people, {**meta, "source": str(path)}, path)


TOFU_QA_PER_AUTHOR = 20
TOFU_AUTHORS = 200


def _check_whole_authors(split: str, n_rows: int, path: Path) -> None:
    if n_rows % TOFU_QA_PER_AUTHOR:
        raise DataError(
            f"{path}: split {split!r} has {n_rows} questions, not a multiple of "
            f"{TOFU_QA_PER_AUTHOR}: TOFU's layout ({TOFU_QA_PER_AUTHOR} questions per author, in "
            "order) does not hold, so its authors cannot be told apart; give the rows a "
            "subject_id or use a folder of <split>.jsonl files"
        )


def _tofu_subjects(raw: dict[str, list[dict]], path: Path) -> dict[str, list[str | None]]:
    """``tofu-author-NNN`` per row of each split that TOFU's layout assigns authors to.

    With a ``full`` split a question's author is its position there (``index // 20``); every
    ``forget*`` / ``retain*`` question must then be in ``full`` and every ``forget*`` split must
    hold whole authors (20 questions each). Without ``full``, ``forget*`` splits are the last
    authors of TOFU's 200 and ``retain*`` / ``full`` splits the first, by position; their sizes
    must then be multiples of 20. Anything else raises :class:`DataError` naming the split.
    """
    out: dict[str, list[str | None]] = {}
    full = raw.get("full")
    if full is not None:
        _check_whole_authors("full", len(full), path)
        index: dict[str, int] = {}
        for i, r in enumerate(full):
            q = r.get("question")
            if q in index and index[q] // TOFU_QA_PER_AUTHOR != i // TOFU_QA_PER_AUTHOR:
                raise DataError(
                    f"{path}: question {q!r} is asked of two authors in split 'full' (rows "
                    f"{index[q]} and {i}), so TOFU's layout cannot assign it an author"
                )
            index.setdefault(q, i)
    n_authors = len(full) // TOFU_QA_PER_AUTHOR if full is not None else TOFU_AUTHORS
    for split, rows in raw.items():
        if not split.startswith(("forget", "retain", "full")) or all("subject_id" in r for r in rows):
            continue
        if full is not None:
            missing = [i for i, r in enumerate(rows) if r.get("question") not in index]
            if missing:
                raise DataError(
                    f"{path}: question {missing[0]} of split {split!r} ({len(missing)} in all) is not "
                    "in split 'full', so TOFU's layout cannot assign it an author; give the rows a "
                    "subject_id or add TOFU's full split"
                )
            subj = [index[r["question"]] // TOFU_QA_PER_AUTHOR for r in rows]
            if split.startswith("forget"):
                counts: dict[int, int] = {}
                for a in subj:
                    counts[a] = counts.get(a, 0) + 1
                part = {a: c for a, c in counts.items() if c != TOFU_QA_PER_AUTHOR}
                if part:
                    a, c = next(iter(part.items()))
                    raise DataError(
                        f"{path}: split {split!r} holds {c} of the {TOFU_QA_PER_AUTHOR} questions of "
                        f"author {a} (position in 'full'): a TOFU forget split forgets whole authors, "
                        "so this folder does not follow TOFU's layout"
                    )
        else:
            _check_whole_authors(split, len(rows), path)
            k = len(rows) // TOFU_QA_PER_AUTHOR
            if k > n_authors:
                raise DataError(
                    f"{path}: split {split!r} has {k} authors' questions, more than TOFU's "
                    f"{n_authors}; add TOFU's full split or give the rows a subject_id"
                )
            first = n_authors - k if split.startswith("forget") else 0
            subj = [first + i // TOFU_QA_PER_AUTHOR for i in range(len(rows))]
        out[split] = [f"tofu-author-{a:03d}" for a in subj]
    return out


def load_tofu(path: str | Path) -> ProfileDataset:
    """Load the real TOFU dataset (``locuslab/TOFU``) from disk; never downloads.

    ``path``: a ``save_to_disk`` folder, a folder of such folders (one per config), a
    folder of TOFU's ``<config>.json`` files, or one such file. TOFU's fields are
    ``question``, ``answer`` and, in its ``*_perturbed`` configs, ``paraphrased_answer``,
    ``perturbed_answer`` (a list) and ``paraphrased_question``; a paraphrased question
    becomes an extra row of kind ``paraphrase``. Kinds: ``world`` for ``world_facts*``,
    ``retain`` for ``real_authors*`` (the ``other`` and ``world`` evaluation sets of a task),
    ``direct`` otherwise.

    The answer variants of the ``*_perturbed`` configs are also given to the rows of the
    other splits that ask the same question with the same answer (so the ``full`` rows a
    model is trained on carry the paraphrased and perturbed answers of ``forget10_perturbed``
    and ``retain_perturbed``, which TOFU's truth ratio and forget quality need).

    TOFU ships no author ids. ``subject_id`` (``tofu-author-NNN``) follows its layout, which
    is checked (:class:`DataError` naming the split when it does not hold): 20 questions per
    author in order; when a ``full`` split is present a question's author is its position
    there and every ``forget*`` split holds whole authors, otherwise ``forget*`` splits are the
    last authors of TOFU's 200 and ``retain*`` splits the first. Rows that already carry
    ``subject_id`` keep it.
    """
    path = Path(path)
    raw = read_records(path)
    subjects = _tofu_subjects(raw, path)
    parts: dict[str, list[dict]] = {}
    for split, rows in raw.items():
        kind = "world" if split.startswith("world_facts") else "retain" if split.startswith("real_authors") else None
        out = []
        for i, r in enumerate(rows):
            row = _normalise({"kind": kind, **r}, split, i, path, f"tofu/{split}/{i:05d}")
            if "subject_id" not in r and kind is None:
                row["subject_id"] = subjects[split][i] if split in subjects else None
            out.append(row)
            pq = r.get("paraphrased_question")
            if isinstance(pq, str) and pq.strip():
                out.append(
                    {**row, "example_id": row["example_id"] + "/paraphrase", "question": pq, "kind": "paraphrase"}
                )
        parts[split] = out
    variants: dict[tuple[str, str], dict] = {}
    for split in sorted(parts):
        for row in parts[split]:
            if row["kind"] != "paraphrase" and row.get("paraphrased_answer") and row["perturbed_answers"]:
                variants.setdefault((row["question"], row["answer"]), row)
    for split, rows in parts.items():
        for row in rows:
            v = variants.get((row["question"], row["answer"]))
            if (
                v is not None
                and row["kind"] != "paraphrase"
                and not row.get("paraphrased_answer")
                and not row["perturbed_answers"]
            ):
                row["paraphrased_answer"], row["perturbed_answers"] = (
                    v["paraphrased_answer"],
                    list(v["perturbed_answers"]),
                )
    return _assemble(parts, [], {"source": str(path), "dataset": "locuslab/TOFU"}, path)
