"""English dated events, facts that change, and two-step (multi-hop) facts about the user's people."""

from __future__ import annotations

# Dated events. `offset`: the event's day relative to the turn's date (the answer is that date, ISO);
# `explicit`: the statement names the day itself ({when}, e.g. "June 14"), which is then the answer;
# `mark`: words every statement of the event holds (the labelled turn's check).
DATES = {
    "half_marathon": dict(
        say=["Finished my first half marathon this morning! 2 hours 4 minutes and I can't feel my legs.",
             "21.1 km done this morning, my first half marathon ever. Medal is on the fridge."],
        ask=["When did I run my first half marathon?", "On what date did I complete my first 21K race?"],
        reply=["Your legs will forget the pain; you will remember the finish line.",
               "I once walked thirty li in the rain and called it a good day. You have outdone me."],
        mark="half marathon", offset=0),
    "mortgage": dict(
        say=["The bank approved our mortgage today!! We're going to be homeowners.",
             "The mortgage approval came through this afternoon, I actually screamed in the office."],
        ask=["When was our home loan approved?", "What day did we hear back from the bank about the house loan?"],
        reply=["A roof of one's own! In Huangzhou I built the Snow Hall with my own hands.",
               "Wonderful news. May the house be warm and the debts be light."], mark="mortgage", offset=0),
    "tattoo": dict(
        say=["Got my first tattoo this afternoon, a tiny crane on my ankle. It stung more than I expected.",
             "I did it, I finally got inked today! Small crane, left ankle."],
        ask=["When did I get my tattoo?", "What day did I get inked for the first time?"],
        reply=["A crane! The bird that flew over my boat at Red Cliff. A fine choice.",
               "Ink on paper fades; ink on skin stays. Choose your lines carefully."], mark="crane", offset=0),
    "tooth": dict(
        say=["Had a wisdom tooth pulled today and now I look like a hamster.",
             "Dentist yanked out my wisdom tooth this morning. Soup for dinner, soup for life."],
        ask=["When was my tooth extraction?", "On which day did I have dental surgery?"],
        reply=["Soft rice porridge and patience. I lost teeth in Hainan and kept eating anyway.",
               "Rest the jaw, not the mind."], mark="wisdom tooth", offset=0),
    "wrist": dict(
        say=["Broke my wrist yesterday falling off my bike, so typing with my left hand now.",
             "Cast on my arm since yesterday — my bike slipped on the wet cobbles and I fractured my wrist."],
        ask=["When did I break my wrist?", "What day did I have my bike accident?"],
        reply=["Bones knit, as poems do, slowly and stronger at the break.",
               "I fell from a horse once in Mizhou; the horse was unharmed, my pride less so."],
        mark="wrist", offset=-1),
    "thesis": dict(
        say=["Submitted my thesis today. Four years of work, one click. I feel empty and elated.",
             "It's done: thesis handed in this morning, all 212 pages of it."],
        ask=["When did I hand in my dissertation?", "On what date did I finish and submit my thesis?"],
        reply=["Now let it go like a boat down the river; it belongs to its readers.",
               "A great labour ended deserves a great meal."], mark="thesis", offset=0),
    "talk": dict(
        say=["Gave my first ever conference talk today, my hands were shaking but people clapped!",
             "Survived my first conference presentation this morning. 20 minutes, 4 questions, 0 disasters."],
        ask=["When did I present at a conference for the first time?", "When was my first conference talk?"],
        reply=["Trembling hands and a steady voice: that is what courage looks like.",
               "I read memorials before the emperor; my knees shook too."], mark="conference", offset=0),
    "nephew": dict(
        say=["My nephew was born this morning! 3.4 kilos of pure noise.",
             "Family news: my nephew arrived at 6:12 this morning, healthy and very loud."],
        ask=["When was my nephew born?", "On what date did the new baby boy in our family arrive?"],
        reply=["A new voice in the family! Wash the baby on the third day, as we did, and wish him a dull life.",
               "May he be happy, and a little foolish, so that he lives long."], mark="nephew", offset=0),
    "tree": dict(
        say=["Planted an apple tree in the back garden today with my dad. He dug, I supervised.",
             "The little apple sapling is in the ground as of this afternoon! Dad did most of the digging."],
        ask=["When did I plant the apple tree?", "On what day did Dad and I put the fruit tree in?"],
        reply=["One plants a tree for the people who come after. I planted pines in Meishan as a boy.",
               "Water it well this first summer."], mark="apple", offset=0),
    "aurora": dict(
        say=["Saw the northern lights tonight for the first time ever. Green curtains across the whole sky.",
             "I'm shaking — the northern lights came out tonight! First time I've ever seen them."],
        ask=["When did I first see the aurora?", "On what night did I see the northern lights?"],
        reply=["Heaven has its own calligraphy. I would have written all night.",
               "Some sights are meant to be carried, not described."], mark="northern lights", offset=0),
    "birthday": dict(
        say=["My birthday's on {when} and I'm already dreading the fuss.",
             "Reminder for future me: book a table for {when}. Birthday dinner, no excuses this year."],
        ask=["When is my birthday?", "On what day and month do I turn a year older?"],
        reply=["We shall mark it with wine and a poem, whatever the fuss.",
               "In the Song we counted age from the new year; yours is kinder."], explicit=True),
    "visa": dict(
        say=["My residence permit runs out on {when}, so the paperwork begins again.",
             "Just checked: the visa expires {when}. Need to book the immigration office."],
        ask=["When does my visa expire?", "What's the deadline on my residence permit?"],
        reply=["Papers and seals — the true rulers of every age.", "Begin early; officials are never in a hurry."],
        explicit=True),
    "surgery": dict(
        say=["The hospital finally gave me a date for the knee operation: {when}.",
             "Knee surgery is booked for {when}. Nervous but relieved to have a date."],
        ask=["When is my knee surgery?", "What date is my operation scheduled for?"],
        reply=["May the surgeon's hand be steady and your recovery quick.",
               "Afterwards, rest; walking sticks are fine companions."], explicit=True),
    "festival": dict(
        say=["Got tickets for the jazz festival! It's on {when}, front row.",
             "Jazz festival on {when} — I've already planned my outfit."],
        ask=["What day is the jazz festival I'm going to?", "When's the music festival I bought tickets for?"],
        reply=["Music under an open sky is the best kind.", "Go, and let the drums shake your ribs."],
        explicit=True),
}

# Facts that change: the old statement early, the new one later. The answer is the newest.
CHANGED = {
    "city": dict(
        old=["Life in {city_old} is good, rent aside. I love our neighbourhood.",
             "Took a long walk along the river here in {city_old} tonight.",
             "Been living in {city_old} for three years now and I still find new cafés."],
        new=["Finally settled into our new place in {city_new}. Boxes everywhere.",
             "We did it — we left {city_old} and moved to {city_new}!",
             "First week living in {city_new}, still getting lost on the way to the supermarket."],
        old_reply=["Every city has a river walk worth knowing. Mine was the Bian in Kaifeng.",
                   "A neighbourhood one loves is worth a little rent."],
        ask=["Which city do I live in now?", "Where am I based these days?", "Where's home for me at the moment?"],
        reply=["A new city is a new poem. I moved so often that every river felt like an old friend.",
               "Take your time to walk its streets; a place reveals itself slowly."],
        answer="city_new", old_answer="city_old"),
    "employer": dict(
        old=["Another long week at {employer_old}. The coffee machine is my most reliable colleague.",
             "I've been at {employer_old} for four years and they still spell my name wrong."],
        new=["First day at {employer_new} today! New badge, new laptop, new everything.",
             "Handed in my notice at {employer_old}; I start at {employer_new} next Monday."],
        old_reply=["Coffee, tea, the same loyal servants in every office.",
                   "Four years in one post! I was rarely allowed four years anywhere."],
        ask=["Which company am I working for now?", "Who's my current employer?"],
        reply=["A change of post! I changed posts twenty times, rarely by choice. Yours sounds better.",
               "New colleagues, new tea habits to learn."],
        answer="employer_new", old_answer="employer_old"),
    "boss": dict(
        old=["My manager {boss_old} wants the whole report by Friday, no pressure.",
             "{boss_old}, my boss, actually praised me in the team meeting today!"],
        new=["{boss_old} left the company, so now I report to {boss_new}. Big change.",
             "Had my first one-to-one with my new manager, {boss_new}. Seems sharp."],
        old_reply=["Friday comes whether the report is ready or not. Begin with the easy part.",
                   "Praise from a superior is rare rain in a dry season. Enjoy it."],
        ask=["Who's my boss these days?", "Who do I report to at work now?"],
        reply=["Superiors come and go like prefects; do good work and let them rotate.",
               "A fair superior is rarer than jade."],
        answer="boss_new", old_answer="boss_old"),
    "rent": dict(
        old=["Paid the rent today: {rent_old} euros gone in one click.",
             "{rent_old} a month for this flat, and the heating barely works."],
        new=["Letter from the landlord: rent is going up to {rent_new} from next month.",
             "Now paying {rent_new} a month in rent. Outrageous."],
        old_reply=["Pay the rent, then pay yourself with a good dinner.", "Wear two robes and write faster."],
        ask=["How much rent do I pay now?", "What does my flat cost me per month at the moment?"],
        reply=["In Huangzhou I lived on 150 cash a day, hung in bags from the beams. Budgeting is ancient wisdom.",
               "Landlords, like tax collectors, never sleep."],
        answer="rent_new", old_answer="rent_old"),
    "diet": dict(
        old=["I've been {diet_old} for about two years and honestly I don't miss much.",
             "Being {diet_old} makes barbecues a little awkward."],
        new=["Big change: I'm {diet_new} now, since the start of this month.",
             "Since I switched to eating {diet_new}, I feel so much lighter."],
        old_reply=["I could not live without meat, I confess; but I could not live without bamboo either.",
                   "Bring your own dish to the barbecue and share it."],
        ask=["How do I eat these days?", "What's my current diet?"],
        reply=["Bamboo shoots and greens have fed many a poet. Eat what keeps you cheerful.",
               "The body is a field; tend it as you see fit."],
        answer="diet_new", old_answer="diet_old"),
    "sport": dict(
        old=["Did {sport_old} twice this week, my shoulders are sore.",
             "Honestly, {sport_old} is my way of switching off after work."],
        new=["I've given up {sport_old} and started {sport_new} instead. Loving it.",
             "My {sport_new} club meets on Tuesdays now, and I'm completely hooked."],
        old_reply=["Sore shoulders are the receipt for a good week.", "Everyone needs a way to put the day down."],
        ask=["Which sport am I into now?", "How do I keep fit at the moment?"],
        reply=["I kept fit by walking hills and rowing on the Yangtze. Any movement is medicine.",
               "A tired body makes for a quiet mind."],
        answer="sport_new", old_answer="sport_old"),
    "car": dict(
        old=["My {car_old} failed its inspection. Again.", "Drove the {car_old} to the coast today, windows down."],
        new=["Sold the old car and picked up a {car_new} yesterday!",
             "The new {car_new} is so quiet I keep forgetting it's on."],
        old_reply=["Old carts and old officials both fail inspections. Be patient with it.",
                   "The coast with the windows down: a poem with wheels."],
        ask=["What car do I drive now?", "What's my current car?"],
        reply=["I travelled by donkey and boat; I envy you your horseless carriage.",
               "May it carry you far and break down rarely."],
        answer="car_new", old_answer="car_old"),
}

# Multi-hop: an introduction names the relative or friend ({rel} {rel_name}); a later hop says something about
# {rel_name} without the relation. The question asks about "my {rel}": both turns are needed.
INTROS = [
    "My {rel} {rel_name} called tonight, we talked for two hours about absolutely nothing.",
    "Spent Sunday helping my {rel}, {rel_name}, assemble a wardrobe. We're still speaking. Barely.",
    "{rel_name} — my {rel} — sent me a voice message singing happy birthday badly off-key.",
    "Had lunch with my {rel} {rel_name}; {pron} always orders for both of us.",
    "My {rel} {rel_name} is the funniest person I know, {pron} should honestly do stand-up.",
]
INTRO_REPLIES = ["Family and old friends are the lamp in the window. My brother Ziyou was mine.",
                 "Keep such people close; they remember who you were before you became who you are.",
                 "With people like that nearby, no exile is too long.", "Give {rel_name} my regards."]
HOPS = {
    "city": dict(say=["{rel_name} says it has rained in {hop_city} for a week; {pron} is sick of living there.",
                      "Visiting {rel_name} in {hop_city} next month; {pron} promised to show me around."],
                 ask=["Which city does my {rel} live in?", "Where is my {rel} living these days?"],
                 answer="hop_city"),
    "job": dict(say=["{rel_name} just qualified as a {hop_job}! So proud.",
                     "{rel_name} had a rough week; apparently being a {hop_job} means nobody ever says thank you."],
                ask=["What does my {rel} do for work?", "What's my {rel}'s job?"], answer="hop_job"),
    "pet": dict(say=["{rel_name}'s {hop_animal} {hop_pet} ate an entire birthday cake off the table.",
                     "{rel_name} sent me photos of {pos} new {hop_animal}, {hop_pet}. Adorable."],
                ask=["What's my {rel}'s pet called?", "What is the name of my {rel}'s animal?"], answer="hop_pet"),
    "hobby": dict(say=["Can't get {rel_name} off the subject of {hop_hobby} lately. New obsession.",
                       "{rel_name} has gotten seriously into {hop_hobby}; it's all {pron} talks about."],
                  ask=["What hobby has my {rel} taken up?", "What's my {rel}'s new passion?"], answer="hop_hobby"),
    "baby": dict(say=["{rel_name} is a parent now! A little girl called {hop_baby}.",
                      "Met {rel_name}'s newborn today: {hop_baby}. Tiny fists, huge lungs."],
                 ask=["What's my {rel}'s baby called?", "What did my {rel} name the new baby?"], answer="hop_baby"),
}
HOP_REPLIES = ["News travels fast. Send {rel_name} my greetings.", "Ah, {rel_name}! Every life has its seasons.",
               "{rel_name} sounds like someone who keeps life interesting.", "Every life has its own flavour."]
