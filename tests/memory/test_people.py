"""Who the user's people are: the relations a message speaks of, and the names memories give them."""

import pytest

from server.memory.people import names, relations


@pytest.mark.parametrize(("message", "found"), [
    ("What's my old roommate's job?", ["roommate"]),
    ("Does my sister get on with my Uncle?", ["sister", "uncle"]),
    ("我大学室友给孩子取了什么名字？", ["室友"]),
    ("我表哥是做什么工作的？", ["表哥"]),  # not 哥哥's 哥
    ("What's my job?", []),
    ("Where does her brother live?", []),  # someone else's brother: no name of the user's to follow
])
def test_the_relations_a_message_speaks_of_are_the_users_own(message, found):
    assert relations(message) == found


@pytest.mark.parametrize(("relation", "texts", "found"), [
    ("uncle", ["Theo: Anders — my uncle — sent me a voice message.", "Maya: My uncle Pablo called tonight."],
     ["Anders", "Pablo"]),
    ("cousin", ["Zoe: Spent Sunday helping my cousin, Pablo, with a wardrobe."], ["Pablo"]),
    ("friend", ["User: my best friend is called Yuki", "User: Hugo is my oldest friend"], ["Yuki", "Hugo"]),
    ("表哥", ["刘洋: 我表哥冯志强今晚打电话来。"], ["冯志强"]),
    ("小姨", ["刘洋: 李静——就是我小姨——给我发了段语音。"], ["李静"]),
    ("sister", ["User: my sister lives in Porto.", "User: my sister and I went to the beach."], []),
    ("妈妈", ["User: 我妈妈今天打电话来了。"], []),  # 今 is no surname: the words after a relation are not a name
])
def test_a_name_is_what_the_user_calls_that_relation(relation, texts, found):
    assert names(relation, texts) == found
