"""English templates for bench/memory_data.py: the user's profile, single facts and the questions about them.

Slots in braces come from the conversation's profile (see `profile`) or, for filler, from `FILL`. Questions are
worded apart from their statements (other words, other angle), so that matching words alone is not enough.
"""

from __future__ import annotations

import random

LANG = "en"
ASSISTANT = "Su Shi"
RELATIONS = ["brother", "sister", "best friend", "cousin", "old roommate", "uncle", "aunt"]
MALE = ["Daniel", "Tomasz", "Marco", "Felix", "Jonas", "Rafael", "Oliver", "Samir", "Hugo", "Mateo", "Kenji",
        "Arjun", "Liam", "Noah", "Emil", "Ivan", "Pablo", "Theo", "Omar", "Callum", "Ruben", "Anders", "Milo"]
FEMALE = ["Maya", "Priya", "Sofia", "Clara", "Ingrid", "Leila", "Hannah", "Nora", "Amara", "Yuki", "Elena",
         "Freya", "Lucia", "Zoe", "Mei", "Aisha", "Greta", "Rosa", "Isla", "Carmen", "Vera", "Tess", "Lena"]
POOLS = {
    "city": ["Berlin", "Paris", "Lisbon", "Vienna", "Prague", "Madrid", "Amsterdam", "Copenhagen", "Oslo",
             "Dublin", "Edinburgh", "Manchester", "Toronto", "Montreal", "Seattle", "Austin", "Chicago", "Boston",
             "Melbourne", "Auckland", "Zurich", "Munich", "Milan", "Krakow", "Budapest", "Rotterdam", "Denver"],
    "hometown": ["Galway", "Bath", "York", "Aarhus", "Ghent", "Bruges", "Salzburg", "Bergen", "Tampere",
                 "Asheville", "Duluth", "Halifax", "Bendigo", "Dunedin", "Kilkenny", "Sintra", "Coimbra", "Girona"],
    "job": ["nurse", "pharmacist", "civil engineer", "primary school teacher", "data analyst", "UX designer",
            "physiotherapist", "sous-chef", "architect", "accountant", "paramedic", "librarian", "electrician",
            "translator", "veterinary nurse", "tram driver", "lawyer", "air traffic controller", "dental hygienist"],
    "employer": ["Northwind Logistics", "Halden & Co", "Brightwater Labs", "Kestrel Insurance", "Lumen Games",
                 "Greenleaf Foods", "Atlas Freight", "Orchard Bank", "Bluefin Analytics", "Marlow Architects",
                 "Copperline Energy", "Riverside Clinic", "Tandem Robotics", "Saltmarsh Press", "Juniper Health"],
    "dish": ["mushroom risotto", "lamb tagine", "pad thai", "shakshuka", "beef pho", "seafood paella",
             "katsu curry", "spinach lasagne", "tonkotsu ramen", "fish tacos", "pierogi", "goulash",
             "butter chicken", "moussaka", "bibimbap"],
    "allergen": ["peanuts", "shellfish", "sesame", "kiwi", "cashews", "strawberries", "eggs", "mustard", "celery"],
    "instrument": ["cello", "ukulele", "trumpet", "violin", "banjo", "clarinet", "drums", "harp", "accordion",
                   "saxophone", "flute", "double bass"],
    "car": ["Volvo estate", "Fiat Panda", "Toyota Corolla", "VW Golf", "Honda Civic", "Skoda Octavia", "Mazda MX-5",
            "Renault Clio", "Subaru Outback", "Ford Fiesta", "Kia Niro", "Nissan Leaf", "Mini Cooper"],
    "book": [("The Remains of the Day", "Ishiguro"), ("Middlemarch", "George Eliot"), ("Stoner", "John Williams"),
             ("One Hundred Years of Solitude", "Márquez"), ("The Left Hand of Darkness", "Le Guin"),
             ("Moby-Dick", "Melville"), ("The Leopard", "Lampedusa"), ("Beloved", "Toni Morrison"),
             ("Pachinko", "Min Jin Lee"), ("The Name of the Rose", "Umberto Eco"), ("Anna Karenina", "Tolstoy")],
    "language": ["Portuguese", "Japanese", "Korean", "Italian", "Dutch", "Greek", "Turkish", "Swedish", "Polish"],
    "team": ["Celtic", "Ajax", "Benfica", "Napoli", "Borussia Dortmund", "Boca Juniors", "Everton", "Sevilla"],
    "spot": ["Lake Bled", "the Isle of Skye", "Lake Como", "the Algarve", "Hallstatt", "the Lofoten Islands",
             "Lake Tahoe", "Cape Cod", "the Dordogne", "Crete"],
    "plant": ["cherry tomatoes", "chillies", "basil", "strawberries", "sunflowers", "lavender", "mint", "dahlias"],
    "degree": ["marine biology", "art history", "mechanical engineering", "philosophy", "economics", "chemistry",
               "linguistics", "geography", "classics"],
    "poem": ["Prelude to Water Melody", "Remembering the Red Cliff", "Calm Wind and Waves",
             "Written on the Wall of West Forest Temple", "Drinking at the Lake", "River Town Dream"],
    "sport": ["swimming", "bouldering", "rowing", "tennis", "cycling", "trail running", "boxing", "badminton",
              "fencing", "salsa", "kayaking", "volleyball"],
    "diet": [("vegetarian", "vegan"), ("pescatarian", "vegetarian"), ("vegan", "flexitarian"),
             ("keto", "Mediterranean"), ("vegetarian", "pescatarian")],
    "hobby": ["pottery", "birdwatching", "sourdough baking", "chess", "woodworking", "knitting", "astronomy",
              "beekeeping", "salsa dancing", "rock climbing"],
    "pet": [("dog", "puppy"), ("cat", "kitten"), ("rabbit", "bunny"), ("dog", "rescue dog"), ("cat", "kitten")],
    "pet_name": ["Biscuit", "Pepper", "Mochi", "Juniper", "Waffles", "Ziggy", "Olive", "Pickles", "Nutmeg", "Bruno",
                 "Tofu", "Luna", "Marbles", "Clementine", "Pancake", "Ginger", "Rocket", "Sable"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"],
}


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def date_text(month: int, day: int) -> str:
    return f"{POOLS['month'][month - 1]} {day}"


def profile(rng: random.Random) -> dict:
    """Everything the user says about themself, plus names and values for other people (distractors)."""
    def pick(key, n):
        return rng.sample(POOLS[key], n)
    men, women = rng.sample(MALE, len(MALE)), rng.sample(FEMALE, len(FEMALE))
    user = (men if rng.random() < 0.5 else women).pop()
    partner_m, kid_m = rng.random() < 0.5, rng.random() < 0.5
    cities, jobs, cars, pets = pick("city", 8), pick("job", 6), pick("car", 3), pick("pet_name", 6)
    employers, sports, dishes = pick("employer", 2), pick("sport", 3), pick("dish", 2)
    allergens, instruments, hobbies = pick("allergen", 2), pick("instrument", 2), pick("hobby", 4)
    book, author = rng.choice(POOLS["book"])
    animal, young = rng.choice(POOLS["pet"])
    rent_old = rng.randrange(800, 1900, 25)
    diet_old, diet_new = rng.choice(POOLS["diet"])
    p = {
        "name": user, "partner_word": "husband" if partner_m else "wife",
        "partner": (men if partner_m else women).pop(), "partner_pos": "his" if partner_m else "her",
        "pet": animal, "pet_young": young, "pet_name": pets[0], "pet_pron": rng.choice(["him", "her"]),
        "job": jobs[0], "hometown": rng.choice(POOLS["hometown"]), "dish": dishes[0], "allergen": allergens[0],
        "kid_word": "son" if kid_m else "daughter", "kid_name": (men if kid_m else women).pop(),
        "kid_age": str(rng.randint(3, 14)), "instrument": instruments[0], "years": str(rng.randint(2, 9)),
        "book": book, "author": author, "floor": ordinal(rng.randint(2, 14)),
        "commute": str(rng.choice([15, 18, 25, 35, 40, 50, 55])), "language": pick("language", 1)[0],
        "team": pick("team", 1)[0], "spot": pick("spot", 1)[0], "plant": pick("plant", 1)[0],
        "degree": pick("degree", 1)[0], "poem": pick("poem", 1)[0],
        "city_old": cities[0], "city_new": cities[1], "employer_old": employers[0], "employer_new": employers[1],
        "boss_old": men.pop(), "boss_new": women.pop(), "rent_old": f"{rent_old:,}",
        "rent_new": f"{rent_old + rng.randrange(50, 300, 25):,}", "diet_old": diet_old, "diet_new": diet_new,
        "sport_old": sports[0], "sport_new": sports[1], "car_old": cars[0], "car_new": cars[1],
        "o_city": cities[2], "o_city2": cities[3], "o_job": jobs[1], "o_car": cars[2], "o_pet": pets[1],
        "o_animal": rng.choice(["dog", "cat", "parrot", "hamster"]), "o_sport": sports[2], "o_dish": dishes[1],
        "o_instrument": instruments[1], "o_age": str(rng.randint(30, 90)), "o_allergen": allergens[1],
        "o_num": str(rng.randint(3, 19)),
    }
    for i in range(1, 9):
        p[f"o{i}"] = (men if i % 2 else women).pop()
    p["bridges"] = []
    for i, rel in enumerate(rng.sample(RELATIONS, len(RELATIONS))):
        male = rel in ("brother", "uncle") or (rel not in ("sister", "aunt") and rng.random() < 0.5)
        p["bridges"].append({
            "rel": rel, "rel_name": (men if male else women).pop(), "pron": "he" if male else "she",
            "pos": "his" if male else "her", "hop_city": cities[4 + i % 4], "hop_job": jobs[2 + i % 4],
            "hop_animal": rng.choice(["dog", "cat", "tortoise", "parrot"]), "hop_pet": pets[2 + i % 4],
            "hop_hobby": hobbies[i % 4], "hop_baby": women.pop()})
    return p


# Single facts: say (the user's statement), ask (the question), reply (Su Shi's answer), answer (the value).
SINGLE = {
    "pet": dict(
        say=["Big news: we brought a {pet_young} home from the shelter on Saturday. The kids named {pet_pron} "
             "{pet_name}.", "Typing one-handed because {pet_name}, our little {pet_young}, fell asleep on my arm.",
             "{pet_name}, our {pet}, knocked a full glass of water onto my keyboard this morning. Pets, honestly."],
        ask=["What's the name of my {pet}?", "Do you remember what my {pet} is called?",
             "Remind me, what did we name our pet?"],
        reply=["{pet_name}! A fine name. In Huangzhou a stray dog followed me for a week; I never named him, and I "
               "regret it still.", "A small creature to rule the house. Guard your inkstone, and your keyboard."],
        answer="{pet_name}"),
    "partner": dict(
        say=["My {partner_word} {partner} made dinner tonight without being asked. I think I'm being buttered up.",
             "Six years married to {partner} and I still laugh at all the same jokes.",
             "Sorry, slow replies: my {partner_word} {partner} is showing me {partner_pos} family's holiday photos."],
        ask=["What's my {partner_word}'s name?", "Who am I married to?", "What is the name of the person I married?"],
        reply=["Cherish that. My wife Wang Fu used to sit behind a screen and listen to my guests, and afterwards "
               "tell me which of them I should trust.", "A shared table is the oldest poem there is."],
        answer="{partner}"),
    "job": dict(
        say=["Twelve-hour shift done. This job is not for the faint-hearted: being a {job} is brutal.",
             "I've been working as a {job} for almost ten years now and I still get nervous on Mondays.",
             "People always assume a {job} has an easy life. They are wrong."],
        ask=["What do I do for a living?", "What's my job again?", "What kind of work do I do?"],
        reply=["A {job}! An honest trade; the court could have used more people who actually do things.",
               "Tired hands are proof of a useful day. Rest well tonight."],
        answer="{job}"),
    "hometown": dict(
        say=["I grew up in {hometown}, a tiny town where everyone knew whose kid you were.",
             "Going back to {hometown} for a few days — that's where I was born and my parents still live there.",
             "Nothing smells like winter in {hometown}, the harbour town I grew up in. I miss it."],
        ask=["Where am I originally from?", "Which town did I grow up in?", "Where was I born?"],
        reply=["Meishan was mine: green hills and the Min river. One never quite stops walking home.",
               "The place that raised us keeps a room for us, even when we have been away for decades."],
        answer="{hometown}"),
    "dish": dict(
        say=["If I could eat one food forever it would be {dish}. No contest.",
             "Made {dish} again tonight. It's my comfort food, I make it whenever life gets heavy.",
             "Someone at the market asked what my favourite meal is and I said {dish} without even thinking."],
        ask=["What's my favourite food?", "Which dish do I love most?", "Which dish could I eat every single day?"],
        reply=["Then it is your Dongpo pork. Every person should have one dish that means home.",
               "Good food eaten slowly is a kind of medicine."],
        answer="{dish}"),
    "allergy": dict(
        say=["Had to send back a dessert tonight — it had {allergen} in it and I'm allergic.",
             "Quick reminder to myself: never trust a restaurant that says 'just a trace of {allergen}'. "
             "I'm allergic, my throat swells up.",
             "My doctor confirmed it today: properly allergic to {allergen}. Great."],
        ask=["Is there anything I can't eat?", "What food makes me sick?", "What am I allergic to?"],
        reply=["Then we shall keep {allergen} far from your table. The body speaks plainly; listen to it.",
               "Even lychees made me feverish when I ate too many. Care for yourself."],
        answer="{allergen}"),
    "kid": dict(
        say=["My {kid_word} {kid_name} turned {kid_age} last week and now apparently knows everything.",
             "{kid_name} — that's my {kid_word} — asked me tonight why the moon follows the car.",
             "Parents' evening at school. {kid_name}'s teacher says my {kid_word} talks too much. Wonder where that "
             "comes from."],
        ask=["What's my child's name?", "What is my {kid_word} called?", "What's the name of my kid?"],
        reply=["{kid_name} sounds like a bright spark. My son Mai asked questions like that on the boat to Huangzhou.",
               "Children ask the questions the rest of us were too proud to keep asking."],
        answer="{kid_name}"),
    "instrument": dict(
        say=["I've been taking {instrument} lessons for {years} years and tonight I finally nailed the piece.",
             "My neighbours must hate me, I played the {instrument} for two hours straight.",
             "Bought new strings, well, new everything, for my {instrument}. Practice starts again tomorrow."],
        ask=["What instrument do I play?", "Which instrument have I been learning?", "What do I practise music on?"],
        reply=["Music without an audience is still music. I played the qin badly and happily.",
               "Two hours of practice is two hours of not worrying about anything else."],
        answer="{instrument}"),
    "book": dict(
        say=["I reread {book} by {author} every single winter. It never gets old.",
             "{book} is the book I'd save from a fire. {author} just gets people.",
             "Started {book} for maybe the fifth time. {author} is my comfort reading."],
        ask=["Which novel do I keep going back to?", "What's my all-time favourite book?",
             "What book do I read again and again?"],
        reply=["A book reread is a friend revisited. I read Tao Yuanming until the pages came loose.",
               "Old books change because we do."],
        answer="{book}"),
    "floor": dict(
        say=["The lift is broken again and we live on the {floor} floor. My legs are done.",
             "Carrying the shopping up to the {floor} floor is my workout now.",
             "You can see the whole river from our flat. Being on the {floor} floor has its perks."],
        ask=["How high up is my apartment?", "Which storey is my flat on?", "What floor of the building do I live on?"],
        reply=["Climbing stairs is only mountain walking with walls. I went up Mount Lu in straw sandals.",
               "A high window is a good place for watching the moon."],
        answer="{floor}"),
    "commute": dict(
        say=["My ride to work takes {commute} minutes each way, so I've started listening to audiobooks.",
             "{commute} minutes there, {commute} minutes back, every day. That's my commute.",
             "Timed my journey to the office today: {commute} minutes door to door."],
        ask=["How long does it take me to get to work?", "How long is my commute?",
             "How much time do I spend travelling to my job?"],
        reply=["Use the road well; I wrote half my letters in carts and boats.",
               "A journey is only wasted if the mind waits for it to end."],
        answer="{commute} minutes"),
    "language": dict(
        say=["Started {language} lessons at the community centre. The grammar is brutal.",
             "My {language} teacher said my accent is 'brave'. I choose to take that as a compliment.",
             "Day 100 of practising {language} on the app, finally understood a whole song."],
        ask=["Which foreign language am I studying?", "What language am I trying to learn?",
             "Which language am I practising?"],
        reply=["A new language is a new window in the same house.", "Brave is good! Courage comes before fluency."],
        answer="{language}"),
    "team": dict(
        say=["{team} lost again tonight. I've supported them since I was six and it's pure suffering.",
             "Watching the {team} match with a beer, don't distract me for ninety minutes.",
             "I'll love {team} until the day I die, even when they play like this."],
        ask=["Which football club do I support?", "What team do I follow?", "Who do I cheer for in football?"],
        reply=["Loyalty through defeat is the truest kind. I stayed loyal to a court that exiled me thrice.",
               "Ninety minutes of hope is not nothing."],
        answer="{team}"),
    "spot": dict(
        say=["Booked the same cabin at {spot} for August, like every year since the kids were small.",
             "Every summer we end up at {spot}. I can't imagine a holiday anywhere else.",
             "Looking at photos from {spot}, counting down to our yearly trip."],
        ask=["Where do I go on holiday every year?", "Which place do we visit each summer?",
             "Where is our usual summer getaway?"],
        reply=["A place visited every year becomes a second home, like West Lake was for me.",
               "Count the days; the waiting is part of the journey."],
        answer="{spot}"),
    "plant": dict(
        say=["My balcony is basically a jungle of {plant} now. I water them every morning before coffee.",
             "First harvest of the season: a handful of {plant} from the balcony pots!",
             "Repotted all my {plant} today, I've got soil under every fingernail."],
        ask=["What am I growing on my balcony?", "What do I grow in my pots outside?", "What's in my little garden?"],
        reply=["In Huangzhou I farmed the eastern slope myself; that is where my name Dongpo comes from.",
               "Soil under the nails is an honest kind of dirt."],
        answer="{plant}"),
    "degree": dict(
        say=["Funny thing, I studied {degree} at university and now I do something totally unrelated.",
             "Found my old {degree} notes from uni in a box. I understood none of them.",
             "My degree was in {degree}. Four years I barely remember."],
        ask=["What did I major in?", "What subject was my university degree?", "What did I study at college?"],
        reply=["I passed the examinations at twenty; what I learned afterwards mattered more.",
               "No learning is wasted; it just waits for its day."],
        answer="{degree}"),
    "poem": dict(
        say=["Honestly, of everything you wrote, {poem} is the one that gets me every time.",
             "I have {poem} printed and framed above my desk. It's my favourite of yours.",
             "Read {poem} at my grandfather's funeral. It's still the poem of yours I love most."],
        ask=["Which of your poems do I like best?", "What's my favourite among your poems?",
             "Which of your poems means the most to me?"],
        reply=["You honour me. I wrote that one with wine on my breath and the moon on the water.",
               "A poem belongs to whoever needs it most."],
        answer="{poem}"),
}
