"""The people a user names: "my uncle Anders" once, then "Anders" ever after.

A question about someone by relation ("What does my uncle do?", "我表哥是做什么工作的？") seldom shares a word
with the memory that answers it ("Anders just qualified as a librarian"): that one names the person, not the
relation. The memory where the user said who is who ("my uncle Anders", "Anders — my uncle", "我表哥冯志强")
bridges the two. So a message that names a relation of the user's gets a third ranking for the fusion: the
memories that name the people the user has called by that relation (`LongTermMemory.recall`).

Measured (bench/memory_recall.py, through the API, same budget): the answering turns held for our English
questions 0.86 → 0.93 (those about someone by relation 0.60 → 1.00) and Chinese 0.46 → 0.56 (0.25 → 0.75);
LoCoMo unchanged, its questions speak of the speakers in the third person. Statements by the assistant count as
the user's (a memory's text does not say which side it was): leaving them out changed nothing on the bench.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from server.memory.ranking import DEPTH
from server.protocols import Hit
from server.store.lexical import CJK

# Memories read for whom the user calls "uncle": those that hold the word, BM25 puts the short ones first
READ_FOR_NAMES = 20

_EN = ("friend", "roommate", "flatmate", "housemate", "uncle", "aunt", "auntie", "cousin", "sister", "brother",
       "mother", "mom", "mum", "father", "dad", "wife", "husband", "partner", "boyfriend", "girlfriend", "fiancé",
       "fiancée", "son", "daughter", "boss", "colleague", "coworker", "neighbour", "neighbor", "grandma",
       "grandmother", "grandpa", "grandfather", "niece", "nephew", "teacher", "mentor", "therapist", "doctor")
_ZH = ("哥哥", "弟弟", "姐姐", "妹妹", "表哥", "表姐", "表弟", "表妹", "堂哥", "堂姐", "堂弟", "堂妹", "舅舅", "叔叔",
       "伯伯", "姑姑", "小姨", "阿姨", "姨妈", "舅妈", "婶婶", "姑妈", "爸爸", "妈妈", "父亲", "母亲", "老公", "老婆",
       "丈夫", "妻子", "儿子", "女儿", "室友", "发小", "闺蜜", "好朋友", "朋友", "同事", "老板", "领导", "邻居",
       "男朋友", "女朋友", "爷爷", "奶奶", "外公", "外婆", "侄子", "侄女", "外甥", "外甥女", "老师", "师父", "同学")
# Chinese has no capitals: a name is told from the words after a relation by its surname (the common ones; a
# familiar 老/小 may precede it)
_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
             "姜崔钟谭陆汪范金石廖贾夏韦付邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵钱严覃武戴莫孔汤")

_EN_RELATION = "|".join(_EN)
_ZH_RELATION = "|".join(sorted(_ZH, key=len, reverse=True))  # longest first: 表哥 before 哥哥's 哥
_ZH_MY = "我的?(?:大学|高中|初中|小学)?"
_MENTION = re.compile(rf"\bmy (?:[a-z]+ )?({_EN_RELATION})\b|{_ZH_MY}({_ZH_RELATION})", re.IGNORECASE)
_NAME = r"(?P<name>[A-Z][a-z'\-]+)"
_ZH_NAME = f"(?P<name>(?:[老小])?[{_SURNAMES}][{CJK}]{{1,2}})"
_EN_IS = rf"(?P<relation>(?i:{_EN_RELATION}))"
_ZH_IS = f"(?P<relation>{_ZH_RELATION})"
# Compiled once, every relation in each: a pattern per relation cost milliseconds to compile at its first use
_STATEMENTS = [re.compile(p) for p in (
    rf"\b[Mm]y (?:[a-z]+ ){{0,2}}{_EN_IS},? (?:(?:is )?(?:called|named) )?{_NAME}",  # my best friend Zoe
    rf"{_NAME},? ?[—–\-,] ?my (?:[a-z]+ ){{0,2}}{_EN_IS}\b",  # Anders — my uncle
    rf"{_NAME} (?:is|was) my (?:[a-z]+ ){{0,2}}{_EN_IS}\b",  # Vera is my sister
    rf"{_ZH_MY}{_ZH_IS}[，,、]?{_ZH_NAME}",  # 我表哥冯志强
    rf"{_ZH_NAME}[，,—\-]+(?:就是|是)?{_ZH_MY}{_ZH_IS}",  # 李静——就是我小姨
)]


def relations(message: str) -> list[str]:
    """The relations of the user's that a message speaks of ("my old roommate" → "roommate", "我表哥" → "表哥")."""
    return list(dict.fromkeys((en or zh).lower() for en, zh in _MENTION.findall(message)))


def names(relation: str, texts: Iterable[str]) -> list[str]:
    """The names that `texts` give the user's `relation` ("my sister Vera" → "Vera"), first seen first."""
    found = (m["name"] for text in texts for pattern in _STATEMENTS for m in pattern.finditer(text)
             if m["relation"].lower() == relation)
    return list(dict.fromkeys(found))


async def naming_people(message: str, search_text: Callable[[str, int], Awaitable[list[Hit]]]) -> list[Hit]:
    """The memories that name the people whom `message` calls by a relation of the user's ("my uncle"), by the
    names the memories that `search_text` (one user's word search) finds give them; [] for most messages."""
    known: list[str] = []
    for relation in relations(message):
        known += names(relation, (hit.doc.text for hit in await search_text(relation, READ_FOR_NAMES)))
    return await search_text(" ".join(known), DEPTH) if known else []
