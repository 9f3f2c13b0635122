"""Chinese dated events, facts that change, and two-step (multi-hop) facts about the user's people."""

from __future__ import annotations

# Dated events. `offset`: the event's day relative to the turn's date (the answer is that date, ISO);
# `explicit`: the statement names the day itself ({when}, e.g. "6月14日"), which is then the answer;
# `mark`: words every statement of the event holds (the labelled turn's check).
DATES = {
    "half_marathon": dict(
        say=["今天早上跑完了人生第一个半程马拉松！2小时04分，腿已经不是我的了。",
             "21公里，今早第一次跑完半程马拉松，奖牌已经挂在冰箱上了。"],
        ask=["我第一次跑半马是哪天？", "我是什么时候完成第一个21公里比赛的？"],
        reply=["腿会忘了疼，你会记住冲线的那一刻。", "我当年冒雨走三十里就觉得是好日子，你比我强多了。"],
        mark="半程马拉松", offset=0),
    "mortgage": dict(
        say=["银行今天批了我们的房贷！！我们要有自己的房子了。",
             "下午收到房贷审批通过的通知，我在办公室直接叫出了声。"],
        ask=["我们的购房贷款是哪天批下来的？", "银行是什么时候通过我们买房的贷款的？"],
        reply=["有了自己的屋顶！我在黄州亲手盖了雪堂。", "好消息。愿屋子暖和，债务轻省。"], mark="房贷", offset=0),
    "tattoo": dict(
        say=["今天下午纹了人生第一个纹身，脚踝上一只小仙鹤，比想象中疼。", "我终于去纹身了！左脚踝，一只小鹤。"],
        ask=["我是哪天去纹身的？", "我第一次在身上刺图案是什么时候？"],
        reply=["仙鹤！赤壁那晚掠过我船头的就是它。选得好。", "纸上的墨会褪，皮肤上的墨不会，线条要想好。"],
        mark="纹身", offset=0),
    "tooth": dict(
        say=["今天拔了一颗智齿，脸肿得像仓鼠。", "上午牙医把我的智齿拔了，晚饭只能喝粥。"],
        ask=["我是哪天拔的牙？", "我做口腔手术是哪一天？"],
        reply=["软软的白粥，慢慢养着。我在海南掉了牙，照样吃饭。", "让下巴歇着，脑子别歇。"], mark="智齿", offset=0),
    "wrist": dict(
        say=["昨天骑车摔了一跤，手腕骨折了，现在只能用左手打字。",
             "从昨天起胳膊上就打着石膏——雨天骑车路滑摔的，手腕骨裂。"],
        ask=["我是哪天摔断手腕的？", "我骑车出事故是哪一天？"],
        reply=["骨头会长好，像诗一样，慢慢地，断处反而更结实。",
               "我在密州也摔过马，马没事，我的面子伤得不轻。"], mark="手腕", offset=-1),
    "thesis": dict(
        say=["今天把毕业论文交了。四年的心血，点一下就提交了，心里又空又高兴。",
             "终于交了！今天上午把学位论文交上去了，整整212页。"],
        ask=["我是哪天交的毕业论文？", "我的学位论文什么时候提交的？"],
        reply=["就像放一条船顺流而下吧，从此它属于读者了。", "大功告成，该吃顿好的。"], mark="论文", offset=0),
    "talk": dict(
        say=["今天第一次在学术会议上做报告，手一直在抖，但大家鼓掌了！",
             "今早熬过了人生第一次会议发言，20分钟，4个提问，没出岔子。"],
        ask=["我第一次在会议上做报告是哪天？", "我的首次学术演讲是什么时候？"],
        reply=["手在抖，声音稳，这就是勇气的样子。", "我在皇帝面前上奏时，膝盖也在抖。"], mark="会议", offset=0),
    "nephew": dict(
        say=["今天早上我外甥出生了！三公斤四，嗓门特别大。", "家里添丁了：我外甥今早六点十二分出生，母子平安。"],
        ask=["我外甥是哪天出生的？", "我们家新添的那个男孩是什么时候生的？"],
        reply=["家里添了新声音！我们那时候洗三，只愿他一生平平安安，愚且鲁。",
               "愿他快乐，带点傻气，这样才长寿。"], mark="外甥", offset=0),
    "tree": dict(
        say=["今天和我爸在后院种了一棵苹果树，他挖坑，我监工。", "下午那棵小苹果树终于种下去了，坑基本是我爸挖的。"],
        ask=["我是哪天种的苹果树？", "我和老爸在院子里栽果树是哪一天？"],
        reply=["种树是为后来的人。我小时候在眉山种过松树。", "头一个夏天要多浇水。"], mark="苹果树", offset=0),
    "aurora": dict(
        say=["今晚第一次看到了极光！绿色的光带挂满整个天空。", "我激动得发抖——今晚极光出来了！这辈子第一次看到。"],
        ask=["我第一次看到极光是哪天？", "我是哪天晚上见到北极光的？"],
        reply=["天也有它自己的书法，我若在场，要写一整夜。", "有些景色是用来装在心里的，不是用来描述的。"],
        mark="极光", offset=0),
    "birthday": dict(
        say=["我生日是{when}，已经开始发愁要怎么过了。", "给未来的自己提个醒：{when}订餐厅，生日饭今年不能再拖。"],
        ask=["我的生日是哪天？", "我每年几月几号过生日？"],
        reply=["到时候我们以酒为贺，再作一首诗。", "宋朝人过了年就长一岁，你们的算法厚道些。"], explicit=True),
    "visa": dict(
        say=["我的居留许可{when}到期，又得开始准备材料了。", "刚查了一下，签证{when}到期，得赶紧预约出入境。"],
        ask=["我的签证什么时候到期？", "我的居留证件最后期限是哪天？"],
        reply=["文书和印章，才是历朝历代真正的主宰。", "早点开始吧，衙门从来不着急。"], explicit=True),
    "surgery": dict(
        say=["医院终于给我排了膝盖手术的日子：{when}。", "膝盖手术定在{when}了，紧张，但总算有个准信。"],
        ask=["我的膝盖手术是哪天？", "我的手术安排在什么日期？"],
        reply=["愿大夫手稳，你早日康复。", "术后好好休养，竹杖也是好伙伴。"], explicit=True),
    "festival": dict(
        say=["抢到音乐节的票了！{when}，还是第一排。", "{when}的爵士音乐节，我连穿什么都想好了。"],
        ask=["我要去的音乐节是哪天？", "我买了票的那场爵士演出在几号？"],
        reply=["露天的音乐最好听。", "去吧，让鼓声震震你的肋骨。"], explicit=True),
}

# Facts that change: the old statement early, the new one later. The answer is the newest.
CHANGED = {
    "city": dict(
        old=["在{city_old}生活挺好的，除了房租。我很喜欢我们这个小区。", "今晚在{city_old}的江边走了好久。",
             "在{city_old}住了三年了，还是经常发现新的咖啡馆。"],
        new=["终于在{city_new}的新家安顿下来了，到处都是纸箱。", "搞定了——我们离开{city_old}，搬到{city_new}了！",
             "搬到{city_new}的第一周，去超市都会迷路。"],
        old_reply=["每座城都有一条值得走的江边路。我的是汴京的汴河。", "喜欢的街坊，多花点房租也值。"],
        reply=["新的城市就是一首新诗。我搬过太多次家，每条江都像老朋友。", "慢慢走它的街巷，一个地方要慢慢才认得清。"],
        ask=["我现在住在哪个城市？", "我这阵子在哪儿安家？", "我目前的家在哪座城？"],
        answer="city_new", old_answer="city_old"),
    "employer": dict(
        old=["在{employer_old}又熬完了一周，咖啡机是我最靠谱的同事。",
             "我在{employer_old}干了四年，他们还是会把我名字写错。"],
        new=["今天第一天去{employer_new}上班！新工牌，新电脑，一切都是新的。",
             "在{employer_old}递了辞呈，下周一去{employer_new}报到。"],
        old_reply=["咖啡也好，茶也好，每个衙门都有几个忠心的仆人。", "一个位子坐四年！我很少能在一处待四年。"],
        reply=["换了差事！我一辈子调任二十来次，很少是自己选的，你这次听着不错。", "新同事，新的喝茶习惯，慢慢适应。"],
        ask=["我现在在哪家公司上班？", "我目前的东家是谁？"],
        answer="employer_new", old_answer="employer_old"),
    "boss": dict(
        old=["我领导{boss_old}让我周五前交整份报告，压力山大。", "我们主管{boss_old}今天在组会上居然表扬我了！"],
        new=["{boss_old}离职了，现在我归{boss_new}管，变化挺大。",
             "今天和新上司{boss_new}第一次一对一谈话，感觉很干练。"],
        old_reply=["周五总会来的，先从容易的部分写起。", "上司的夸奖是旱季里的雨，好好享受。"],
        reply=["上司来来去去，就像知州换任，把活干好就行。", "公正的上司比美玉还难得。"],
        ask=["我现在的领导是谁？", "我如今在单位向谁汇报？"],
        answer="boss_new", old_answer="boss_old"),
    "rent": dict(
        old=["今天交了房租，{rent_old}块一下就没了。", "这房子一个月{rent_old}，暖气还时好时坏。"],
        new=["房东来通知了：下个月起房租涨到{rent_new}。", "现在每个月房租{rent_new}，离谱。"],
        old_reply=["交了房租，再请自己吃顿好的。", "多穿件衣裳，写字写快些。"],
        reply=["我在黄州每天只花一百五十钱，钱串挂在房梁上。精打细算是古老的智慧。", "房东和收税的一样，从来不睡觉。"],
        ask=["我现在每个月房租多少？", "我租的房子眼下月租是多少？"],
        answer="rent_new", old_answer="rent_old"),
    "diet": dict(
        old=["我{diet_old}差不多两年了，说实话也不怎么馋。", "因为我{diet_old}，每次烧烤聚会都有点尴尬。"],
        new=["有个大变化：从这个月起我改成{diet_new}了。", "自从换成{diet_new}，整个人轻快多了。"],
        old_reply=["我承认我离不了肉，可也离不了竹子。", "自己带一道菜去烧烤，分给大家。"],
        reply=["竹笋青菜养活过不少诗人，吃得开心最要紧。", "身体是块田，怎么侍弄你自己定。"],
        ask=["我现在是怎么吃饭的？", "我目前的饮食习惯是什么？"],
        answer="diet_new", old_answer="diet_old"),
    "sport": dict(
        old=["这周去了两次{sport_old}，肩膀酸死了。", "下班后{sport_old}是我放空自己的方式。"],
        new=["我不搞{sport_old}了，改练{sport_new}，特别喜欢。", "我现在周二都去{sport_new}俱乐部，彻底上瘾了。"],
        old_reply=["肩膀酸，是这一周过得充实的收据。", "人总得有个放下一天的法子。"],
        reply=["我靠爬山和在长江上划船锻炼，动一动就是药。", "身体累了，心就静了。"],
        ask=["我最近迷上了什么运动？", "我现在靠什么健身？"],
        answer="sport_new", old_answer="sport_old"),
    "car": dict(
        old=["我那辆{car_old}年检又没过。", "今天开着{car_old}去了海边，一路开着窗。"],
        new=["旧车卖了，昨天提了一辆{car_new}！", "新买的{car_new}太安静了，我老忘了它已经发动了。"],
        old_reply=["旧车和旧官一样，总过不了考核，耐心些。", "开着窗去海边，这是有轮子的诗。"],
        reply=["我出门靠毛驴和船，真羡慕你们不用马拉的车。", "愿它载你走远，少出毛病。"],
        ask=["我现在开的是什么车？", "我目前的座驾是哪款？"],
        answer="car_new", old_answer="car_old"),
}

# Multi-hop: an introduction names the relative or friend ({rel} {rel_name}); a later hop says something about
# {rel_name} without the relation. The question asks about "my {rel}": both turns are needed.
INTROS = [
    "我{rel}{rel_name}今晚打电话来，我们天南海北聊了两个小时。",
    "周日帮我{rel}{rel_name}装了个衣柜，装完我俩还没绝交，算是奇迹。",
    "{rel_name}——就是我{rel}——给我发了段语音，跑调地唱生日快乐。",
    "中午和我{rel}{rel_name}吃饭，{pron}总是替我们俩点菜。",
    "我{rel}{rel_name}是我认识的最搞笑的人，{pron}真该去说脱口秀。",
]
INTRO_REPLIES = ["家人和老友是窗前的那盏灯。我弟弟子由就是我的那盏。",
                 "这样的人要常来往，他们记得你还没成为现在这个你的样子。",
                 "有这样的人在身边，日子就不会太苦。", "替我向{rel_name}问声好。"]
HOPS = {
    "city": dict(say=["{rel_name}说{hop_city}已经连着下了一周的雨，住在那边都快发霉了。",
                      "下个月去{hop_city}找{rel_name}玩，{pron}说要带我到处转转。"],
                 ask=["我{rel}住在哪个城市？", "我{rel}现在在哪儿生活？"], answer="hop_city"),
    "job": dict(say=["{rel_name}刚考下证，正式成为{hop_job}了！真为{pron}骄傲。",
                     "{rel_name}这周过得很糟，说当{hop_job}就是永远没人说声谢谢。"],
                ask=["我{rel}是做什么工作的？", "我{rel}的职业是什么？"], answer="hop_job"),
    "pet": dict(say=["{rel_name}家的{hop_animal}{hop_pet}把桌上一整个生日蛋糕都吃了。",
                     "{rel_name}给我发了{pron}新养的{hop_animal}的照片，名字叫{hop_pet}，萌死了。"],
                ask=["我{rel}养的宠物叫什么？", "我{rel}家的小动物名字是什么？"], answer="hop_pet"),
    "hobby": dict(say=["{rel_name}最近迷上了{hop_hobby}，三句话不离这个。",
                       "{rel_name}现在每个周末都在搞{hop_hobby}，都入魔了。"],
                  ask=["我{rel}最近迷上了什么爱好？", "我{rel}新的兴趣是什么？"], answer="hop_hobby"),
    "baby": dict(say=["{rel_name}家添了个闺女，小名叫{hop_baby}。",
                      "今天去看了{rel_name}刚出生的宝宝{hop_baby}，小拳头攥得紧紧的。"],
                 ask=["我{rel}家的宝宝叫什么？", "我{rel}给新生的孩子取了什么名字？"], answer="hop_baby"),
}
HOP_REPLIES = ["消息传得真快。替我向{rel_name}问好。", "啊，{rel_name}！人生各有各的时节。",
               "听起来{rel_name}过得挺热闹。",
               "人各有各的日子，各有各的滋味。"]
