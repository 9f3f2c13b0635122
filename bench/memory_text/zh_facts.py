"""Chinese templates for bench/memory_data.py: the user's profile, single facts and the questions about them.

Slots in braces come from the conversation's profile (see `profile`). Questions are worded apart from their
statements (other words, other angle), so that matching characters alone is not enough.
"""

from __future__ import annotations

import random

LANG = "zh"
ASSISTANT = "苏轼"
RELATIONS = [("哥哥", "m"), ("姐姐", "f"), ("弟弟", "m"), ("妹妹", "f"), ("表姐", "f"), ("表哥", "m"),
             ("大学室友", ""), ("发小", ""), ("舅舅", "m"), ("小姨", "f")]
MALE = ["张伟", "王磊", "刘洋", "陈杰", "杨帆", "黄浩", "周宇", "吴昊", "徐斌", "孙鹏", "马超", "胡军", "郭涛",
        "何俊", "高远", "林峰", "罗毅", "梁栋", "宋明", "郑凯", "谢文", "唐亮", "冯志强", "曹磊"]
FEMALE = ["李静", "王芳", "赵敏", "黄蕾", "徐婷", "孙悦", "朱琳", "郭佳", "何欣", "林晓雯", "陈思琪", "杨雪",
          "刘畅", "周婷婷", "吴佩", "郑雨", "马丽", "胡月", "罗兰", "梁晨", "宋佳", "谢婉", "韩梅", "唐颖"]
POOLS = {
    "city": ["北京", "上海", "广州", "深圳", "成都", "杭州", "南京", "武汉", "西安", "重庆", "苏州", "厦门",
             "青岛", "大连", "长沙", "昆明", "天津", "合肥", "郑州", "宁波", "台北", "香港", "沈阳", "福州"],
    "hometown": ["绍兴", "桂林", "大理", "扬州", "泉州", "景德镇", "乐山", "开封", "洛阳", "潮州", "湛江",
                 "平遥", "婺源", "延边", "赣州", "遵义"],
    "job": ["护士", "药剂师", "土木工程师", "小学老师", "数据分析师", "交互设计师", "康复治疗师", "厨师", "建筑师",
            "会计", "急诊科医生", "图书管理员", "电工", "翻译", "宠物医生", "地铁司机", "律师", "空中交通管制员"],
    "employer": ["华星物流", "青木科技", "远山设计院", "蓝海保险", "星火游戏", "绿源食品", "长风证券", "云帆数据",
                 "金桥银行", "新禾教育", "启明机器人", "万象传媒", "南山医院", "北辰能源"],
    "dish": ["酸菜鱼", "麻婆豆腐", "小龙虾", "螺蛳粉", "羊肉泡馍", "担担面", "糖醋排骨", "剁椒鱼头", "生煎包",
             "肠粉", "过桥米线", "热干面", "卤肉饭", "锅包肉", "煲仔饭"],
    "allergen": ["花生", "海鲜", "芒果", "牛奶", "芝麻", "猕猴桃", "鸡蛋", "菠萝", "坚果"],
    "instrument": ["古筝", "二胡", "琵琶", "小提琴", "大提琴", "尤克里里", "萨克斯", "架子鼓", "长笛", "竹笛"],
    "car": ["比亚迪秦", "大众朗逸", "丰田卡罗拉", "本田思域", "五菱宏光", "特斯拉Model 3", "吉利帝豪", "长安CS75",
            "蔚来ES6", "理想L7", "宝马3系", "马自达3"],
    "book": [("平凡的世界", "路遥"), ("活着", "余华"), ("围城", "钱钟书"), ("红楼梦", "曹雪芹"), ("边城", "沈从文"),
             ("三体", "刘慈欣"), ("百年孤独", "马尔克斯"), ("人间词话", "王国维"), ("额尔古纳河右岸", "迟子建"),
             ("白鹿原", "陈忠实"), ("繁花", "金宇澄")],
    "language": ["日语", "韩语", "法语", "西班牙语", "德语", "粤语", "俄语", "意大利语", "泰语"],
    "team": ["山东泰山", "上海海港", "成都蓉城", "北京国安", "广东宏远", "辽宁本钢", "浙江队", "武汉三镇"],
    "spot": ["千岛湖", "洱海", "青海湖", "阳朔", "涠洲岛", "莫干山", "长白山", "鼓浪屿", "稻城亚丁", "喀纳斯"],
    "plant": ["多肉", "绿萝", "茉莉", "栀子花", "小番茄", "薄荷", "月季", "蓝莓", "辣椒"],
    "degree": ["历史", "化学", "土木工程", "新闻学", "临床医学", "会计学", "法学", "哲学", "生物", "汉语言文学"],
    "poem": ["《水调歌头·明月几时有》", "《念奴娇·赤壁怀古》", "《定风波·莫听穿林打叶声》", "《题西林壁》",
             "《饮湖上初晴后雨》", "《江城子·十年生死两茫茫》", "《惠崇春江晚景》"],
    "sport": ["游泳", "攀岩", "羽毛球", "网球", "骑行", "越野跑", "拳击", "乒乓球", "瑜伽", "八段锦", "滑板"],
    "diet": [("素食", "纯素"), ("只吃鱼不吃肉", "全素"), ("生酮饮食", "地中海饮食"), ("少油少盐", "轻断食")],
    "hobby": ["陶艺", "观鸟", "烘焙", "围棋", "木工", "钩针编织", "天文观测", "养蜂", "书法", "露营"],
    "pet": [("狗", "小狗"), ("猫", "小猫"), ("猫", "橘猫"), ("狗", "柯基"), ("兔子", "小兔子")],
    "pet_name": ["豆豆", "可乐", "团子", "小橘", "芝麻", "旺财", "年糕", "汤圆", "布丁", "花卷", "大黄", "球球",
                 "糯米", "雪球", "奶茶", "元宝"],
}


def date_text(month: int, day: int) -> str:
    return f"{month}月{day}日"


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
    rent_old = rng.randrange(2200, 6500, 100)
    diet_old, diet_new = rng.choice(POOLS["diet"])
    p = {
        "name": user, "partner_word": "老公" if partner_m else "老婆", "partner": (men if partner_m else women).pop(),
        "pet": animal, "pet_young": young, "pet_name": pets[0],
        "job": jobs[0], "hometown": rng.choice(POOLS["hometown"]), "dish": dishes[0], "allergen": allergens[0],
        "kid_word": "儿子" if kid_m else "女儿", "kid_name": rng.choice(["乐乐", "朵朵", "果果", "安安", "小满", "壮壮",
                                                                  "糖糖", "豆包", "一一", "天天"]),
        "kid_age": str(rng.randint(3, 14)), "instrument": instruments[0], "years": str(rng.randint(2, 9)),
        "book": book, "author": author, "floor": str(rng.randint(2, 28)),
        "commute": str(rng.choice([15, 20, 25, 35, 40, 50, 70])), "language": pick("language", 1)[0],
        "team": pick("team", 1)[0], "spot": pick("spot", 1)[0], "plant": pick("plant", 1)[0],
        "degree": pick("degree", 1)[0], "poem": pick("poem", 1)[0],
        "city_old": cities[0], "city_new": cities[1], "employer_old": employers[0], "employer_new": employers[1],
        "boss_old": men.pop(), "boss_new": women.pop(), "rent_old": str(rent_old),
        "rent_new": str(rent_old + rng.randrange(200, 900, 100)), "diet_old": diet_old, "diet_new": diet_new,
        "sport_old": sports[0], "sport_new": sports[1], "car_old": cars[0], "car_new": cars[1],
        "o_city": cities[2], "o_city2": cities[3], "o_job": jobs[1], "o_car": cars[2], "o_pet": pets[1],
        "o_animal": rng.choice(["狗", "猫", "鹦鹉", "仓鼠"]), "o_sport": sports[2], "o_dish": dishes[1],
        "o_instrument": instruments[1], "o_age": str(rng.randint(30, 90)), "o_allergen": allergens[1],
        "o_num": str(rng.randint(3, 9)),
    }
    for i in range(1, 9):
        p[f"o{i}"] = (men if i % 2 else women).pop()
    p["bridges"] = []
    for i, (rel, sex) in enumerate(rng.sample(RELATIONS, len(RELATIONS))):
        male = sex == "m" or (not sex and rng.random() < 0.5)
        p["bridges"].append({
            "rel": rel, "rel_name": (men if male else women).pop(), "pron": "他" if male else "她",
            "hop_city": cities[4 + i % 4], "hop_job": jobs[2 + i % 4],
            "hop_animal": rng.choice(["狗", "猫", "乌龟", "鹦鹉"]), "hop_pet": pets[2 + i % 4],
            "hop_hobby": hobbies[i % 4], "hop_baby": rng.choice(["小禾", "念念", "一诺", "可可", "星星", "悠悠"])})
    return p


# Single facts: say (the user's statement), ask (the question), reply (苏轼's answer), answer (the value).
SINGLE = {
    "pet": dict(
        say=["跟你说个好消息，周六我们从救助站领养了一只{pet_young}，给它取名叫{pet_name}。",
             "我现在只能单手打字，因为{pet_name}趴在我胳膊上睡着了，这只{pet_young}太会撒娇了。",
             "今天早上我家{pet}{pet_name}把一整杯水打翻在键盘上，我真是服了这小家伙。"],
        ask=["我家那只{pet}叫什么名字？", "你还记得我养的宠物叫啥吗？", "我们家毛孩子的名字是什么来着？"],
        reply=["{pet_name}，好名字！当年在黄州有只野狗跟了我一个礼拜，我始终没给它起名，至今想来还有些遗憾。",
               "家中添了个小主人，可要护好你的砚台，还有键盘。"],
        answer="{pet_name}"),
    "partner": dict(
        say=["今晚我{partner_word}{partner}主动做了一桌菜，我怀疑是有事求我。",
             "和{partner}结婚六年了，有时候感觉才过了六个礼拜。",
             "不好意思回得慢，我{partner_word}{partner}正拉着我看他们家出去玩的照片。"],
        ask=["我的另一半叫什么？", "我跟谁结的婚？", "我爱人的名字是什么？"],
        reply=["要珍惜啊。我的亡妻王弗从前常在屏风后听我和客人说话，事后告诉我哪个人可信。",
               "一张饭桌，两个人，是世上最老的一首诗。"],
        answer="{partner}"),
    "job": dict(
        say=["刚下十二个小时的班，当{job}真不是一般人能干的。", "我干{job}快十年了，每到周一还是会紧张。",
             "大家总以为{job}挺轻松的，其实完全不是那么回事。"],
        ask=["我是做什么工作的？", "我的职业是什么来着？", "我靠什么谋生？"],
        reply=["{job}！踏实的营生。朝廷里要是多些真正做事的人就好了。", "手累了，说明今天没白过。今晚好好歇着。"],
        answer="{job}"),
    "hometown": dict(
        say=["我是在{hometown}长大的，小地方，谁家孩子大家都认识。",
             "过几天回{hometown}，我就是在那儿出生的，爸妈现在还住那边。",
             "冬天老家{hometown}老街上的那股味道，别的地方都闻不到，好想念。"],
        ask=["我老家是哪里的？", "我是在哪座城市长大的？", "我出生在什么地方？"],
        reply=["我的故乡是眉山，青山绿水，岷江流过。人这一辈子，走多远都在往家走。",
               "养育我们的地方，总给我们留着一间屋子，哪怕离开几十年。"],
        answer="{hometown}"),
    "dish": dict(
        say=["要是这辈子只能吃一样东西，我选{dish}，毫无悬念。", "今晚又做了{dish}，心里不痛快的时候我就做这个。",
             "菜市场阿姨问我最爱吃什么，我脱口而出就是{dish}。"],
        ask=["我最喜欢吃的菜是什么？", "我百吃不厌的是哪道菜？", "我的心头好是哪道菜？"],
        reply=["那便是你的东坡肉了。人总该有一道菜，一吃就想到家。", "好饭慢慢吃，也是一味药。"],
        answer="{dish}"),
    "allergy": dict(
        say=["今晚把一份甜点退了，里面有{allergen}，我一碰就过敏。", "医生今天确诊了：我对{allergen}过敏，真是服了。",
             "提醒一下自己：饭店说“只放了一点点{allergen}”也不能信，我喉咙会肿。"],
        ask=["我有什么东西不能吃？", "哪种食物会让我起反应？", "我对什么过敏？"],
        reply=["那我们就让{allergen}离你的饭桌远远的。身体说话最直接，要听它的。", "我荔枝吃多了也上火，你要多保重。"],
        answer="{allergen}"),
    "kid": dict(
        say=["我{kid_word}{kid_name}上周刚满{kid_age}岁，现在觉得自己什么都懂。",
             "{kid_name}今晚问我，为什么月亮一直跟着我们的车走。这孩子是我{kid_word}，脑洞特别大。",
             "今天开家长会，老师说我家{kid_name}上课话太多。也不知道随谁。"],
        ask=["我家孩子叫什么？", "我{kid_word}的小名是什么？", "我孩子的名字你还记得吗？"],
        reply=["{kid_name}听着就是个机灵鬼。我儿子苏迈在去黄州的船上也问过这样的问题。",
               "孩子问的，正是大人不好意思再问的。"],
        answer="{kid_name}"),
    "instrument": dict(
        say=["学{instrument}学了{years}年，今晚终于把那首曲子完整弹下来了。",
             "我一口气练了两个小时{instrument}，邻居估计恨死我了。",
             "给我的{instrument}换了一整套新配件，明天开始重新练。"],
        ask=["我会演奏什么乐器？", "我一直在学哪样乐器？", "我平时练的是什么乐器？"],
        reply=["没有听众的音乐也是音乐。我弹琴弹得很差，却弹得很开心。", "练两个小时，就是两个小时什么都不用愁。"],
        answer="{instrument}"),
    "book": dict(
        say=["每年冬天我都要重读一遍{author}的《{book}》，怎么读都不腻。",
             "要是家里着火，我第一个抢出来的就是《{book}》。",
             "又翻开《{book}》了，大概是第五遍。{author}的书是我的安神药。"],
        ask=["我反复重读的是哪本书？", "我最喜欢的一本书是什么？", "我百读不厌的是哪本书？"],
        reply=["书重读一遍，就像老友重逢。我读陶渊明，读到书页都散了。", "旧书会变，是因为读书的人变了。"],
        answer="{book}"),
    "floor": dict(
        say=["电梯又坏了，我们家住{floor}楼，腿都爬软了。", "每次拎菜爬到{floor}楼，就当是锻炼了。",
             "从我家窗户能看到整条江，住在{floor}楼还是有好处的。"],
        ask=["我家住在几层？", "我住的房子在第几层？", "我住的楼层是多少？"],
        reply=["爬楼梯不过是有墙的爬山。我当年穿着草鞋上庐山呢。", "高处的窗户，正好赏月。"],
        answer="{floor}楼"),
    "commute": dict(
        say=["我上班单程要{commute}分钟，所以开始在路上听书了。",
             "去公司{commute}分钟，回家又是{commute}分钟，天天如此。",
             "今天掐表算了一下，从家门口到公司一共{commute}分钟。"],
        ask=["我去上班路上要花多久？", "我每天通勤时间是多少？", "从我家到单位要多长时间？"],
        reply=["路上的时间用好了就不算浪费，我一半的信都是在车上船上写的。", "心若不急着到，路便不长。"],
        answer="{commute}分钟"),
    "language": dict(
        say=["在社区中心报了个{language}班，语法难得要命。", "我的{language}老师说我的发音很“勇敢”，我就当是夸我了。",
             "在APP上练{language}第一百天，终于听懂了一整首歌。"],
        ask=["我在学哪门外语？", "我最近在学什么语言？", "我在练哪种外语？"],
        reply=["学一门新话，就是在同一间屋子里开一扇新窗。", "勇敢好啊！先有胆量，后有流利。"],
        answer="{language}"),
    "team": dict(
        say=["{team}今晚又输了。我从六岁开始支持他们，纯属自虐。", "正在看{team}的比赛，这九十分钟别打扰我。",
             "我这辈子都是{team}的球迷，哪怕他们踢成这样。"],
        ask=["我支持哪支球队？", "我是哪个队的球迷？", "看球的时候我给谁加油？"],
        reply=["输了还不离不弃，才是真忠诚。我被贬了三次，对朝廷也没变过心。", "九十分钟的盼头，也不算少了。"],
        answer="{team}"),
    "spot": dict(
        say=["八月又订了{spot}那边的同一家民宿，孩子小时候起每年都去。",
             "每年夏天我们都会去{spot}，别的地方想都没想过。",
             "翻着去年在{spot}拍的照片，数着日子等今年的旅行。"],
        ask=["我每年夏天去哪里度假？", "我们一家的老地方是哪儿？", "我们每年固定去哪儿玩？"],
        reply=["每年都去的地方，就成了第二个家，就像西湖之于我。", "数着日子，等待本身也是旅途的一部分。"],
        answer="{spot}"),
    "plant": dict(
        say=["我家阳台现在简直是{plant}的丛林，每天早上喝咖啡前都先去浇水。",
             "今年第一次收获：阳台上摘了一小把{plant}！",
             "今天给所有的{plant}换了盆，指甲缝里全是土。"],
        ask=["我在阳台上种了什么？", "我家花盆里养的是什么？", "我的小阳台花园里有什么？"],
        reply=["我在黄州亲自耕种东边的坡地，东坡这个号就是这么来的。", "指甲缝里的土，是最干净的脏。"],
        answer="{plant}"),
    "degree": dict(
        say=["说来好笑，我大学读的是{degree}，现在干的完全不相干。",
             "在箱子里翻到大学时的{degree}笔记，一个字都看不懂了。",
             "我本科学的{degree}，那四年几乎忘光了。"],
        ask=["我大学学的什么专业？", "我本科念的是哪个专业？", "我在大学里主修什么？"],
        reply=["我二十岁中进士，后来学到的东西更要紧。", "学过的东西不会白学，只是在等它的时候。"],
        answer="{degree}"),
    "poem": dict(
        say=["说真的，你写的所有作品里，{poem}每次都能戳中我。",
             "我把{poem}裱起来挂在书桌上方，是你的诗里我最爱的一首。",
             "爷爷的葬礼上我念了{poem}，到现在它还是我最喜欢的。"],
        ask=["你的诗里我最喜欢哪一首？", "你的哪首作品对我意义最大？", "我最爱你的哪篇作品？"],
        reply=["承蒙厚爱。那一首是带着酒气、对着水中月写的。", "诗属于最需要它的人。"],
        answer="{poem}"),
}
