#!/usr/bin/env python3
"""Generates training instructions of the kinds the model got wrong on unseen authors.

    python3 data/intents/generate_hard.py > data/intents/train_hard.jsonl

(defaults: --seed 11 --variants 3000 --templates 1100)

Two parts, both labelled exactly:
- variants of generated instructions (read from train.jsonl, never from a dev or test
  set): a long situational preamble before the ask (edits get preambles about the
  picture), an emoji right after a slot or at the end, English words for Chinese styles
  and nouns inside a slot (watercolor, cat), English request verbs (make me / draw);
  each variant is kept only if every slot is still found where it was (the same rule as
  crates/agent/src/intent/corpus.rs);
  attributes after the subject, set off by a space or a comma and never labelled (女孩 短发
  戴眼镜, 一只狐狸，毛茸茸的: a span does not run across either);
- instructions from templates: uses named as nouns (主视觉, KV, 底图, a poster meant as a
  gift), questions about a picture and translating the text in it (`other`), keyword
  requests (a use, then the theme, then a size, set off by spaces: 读书会海报 主题是X 竖版,
  公众号封面 X 3:4), an event with its purpose before the poster noun (X宣传海报 → X宣传).
The conventions are those of INTENTS.md and data/intents/README.md.
"""
import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from generate_corpus import located_like_rust, ORDER  # noqa: E402
from lexicon import FESTIVALS, BUSINESSES, PUBLIC_CAUSES, STYLES, BG_SUBJECTS, POSTER_THEMES  # noqa: E402

HERE = Path(__file__).parent
R = random.Random()

PREAMBLES = """我们公司下个月要办十周年庆典，行政那边让我负责物料，时间特别紧，
最近在帮朋友的小店做小红书运营，粉丝还不多，想提升一下质感，
我是一名小学美术老师，下周要上公开课，需要一些素材，
是这样的，我女儿幼儿园布置了亲子作业，我自己完全不会画画，
家里老人过八十大寿，亲戚们周末都会来，我想准备点东西，
我在B站做UP主，粉丝大多是学生，最近想换个感觉，
不好意思打扰一下，我第一次用这个工具，不太会操作，
上次你帮我做的那张老板很满意，这次还想麻烦你，
我们团队在准备一个创业比赛的路演，明天上午就要交材料，
我是开民宿的，在大理，最近淡季客人少，想在网上多宣传宣传，
我们社区下周六有个邻里节活动，居委会让我帮忙准备，
我老婆下个月生日，我想给她一个惊喜，但我审美不太行，
我在写一篇公众号文章，讲的是城市里的烟火气，需要配图，
孩子最近迷上了恐龙和太空，天天缠着我讲故事，
我是做跨境电商的，主要卖到欧美，图片要求比较高，
老板今天早上突然说要换风格，我改了一上午都不满意，
作为一个完全没有设计基础的人，我真的尽力了，
我们学校艺术节快到了，班主任让每个班出一份作品，
最近在学做自媒体，看别人的图都很好看，
我是个程序员，对设计一窍不通，领导却让我出图，
今天加班到很晚，脑子已经转不动了，
我们乐队下个月要在livehouse演出，
朋友开了家新店，托我帮忙想想办法，
我想给爸妈的结婚纪念日准备点东西，
下午三点就要交稿了，拜托快一点，
我在做毕业设计，题目是关于城市更新的，
我在准备一个线上分享，听众大概两百人，
这个周末我们全家要去露营，
公司年会要抽奖，还要表演节目，我被安排做物料，
我的猫今年三岁了，超级黏人，""".split()

EDIT_PREAMBLES = """这张是我们去年毕业旅行拍的合照，大家都很喜欢，
昨天生成的那张图整体挺好的，就是有个地方不太满意，
客户看了初稿，提了几个修改意见，
这是我给店里拍的产品图，光线不太好，
照片是在海边拍的，那天天气不太好，
我妈很喜欢这张照片，想打印出来挂在客厅里，
这张海报明天就要印了，刚发现一个问题，
领导说这张图太素了，
这是我家猫的照片，它平时可凶了，
朋友婚礼上拍的照片，我想修一下再发给他们，
这张是公司的宣传图，已经用了一年了，
我拍的风景照总觉得差点意思，
刚才那张挺接近了，再改一点点就好，
这张图是要放在官网首页的，
这是我儿子的证件照，学校要交电子版，
图是从网上找的参考，我想改成自己的，
这个是我们的新品包装图，还没定稿，
我自己P了半天没P好，只好来找你，
这张是在老家院子里拍的，旁边还停着一辆三轮车，
照片上有我和我妹妹，她穿着红裙子，我戴着帽子，
拍的时候窗外在下雨，玻璃上都是水珠，
这是我烤的蛋糕，桌上还摆着蜡烛和盘子，
这张是团建时拍的，后面是山，前面是一排帐篷，
我家狗狗趴在沙发上，毯子皱成一团，
这张产品图的桌面有点脏，灯光也偏黄，
孩子在游乐场拍的，旋转木马后面人很多，""".split()

EMOJIS = ["😂", "🙏", "✨", "🎉", "👍", "🥺", "😊", "🔥", "🌸", "🐱", "😭", "💪", "🎂", "🌙", "⭐", "🤔", "🥰", "👀"]

ENGLISH_STYLES = {"水彩": ["watercolor", "watercolour"], "油画": ["oil painting"], "赛博朋克": ["cyberpunk", "Cyberpunk"],
                  "像素": ["pixel art", "pixel"], "动漫": ["anime"], "极简": ["minimalist", "minimal"],
                  "复古": ["vintage", "retro"], "写实": ["realistic"], "扁平": ["flat"], "素描": ["sketch"],
                  "蒸汽朋克": ["steampunk"], "卡通": ["cartoon"], "水墨": ["ink wash"], "手绘": ["hand-drawn"],
                  "日系": ["Japanese"], "美漫": ["comic"], "国潮": ["guochao"], "二次元": ["ACG", "anime"],
                  "皮克斯": ["Pixar"], "吉卜力": ["Ghibli"], "低多边形": ["low poly"], "剪纸": ["paper-cut"]}
ENGLISH_NOUNS = {"猫": "cat", "小猫": "kitten", "狗": "dog", "柯基": "corgi", "柴犬": "shiba", "熊猫": "panda",
                 "宇航员": "astronaut", "城市": "city", "机器人": "robot", "恐龙": "dinosaur", "女孩": "girl",
                 "男孩": "boy", "火箭": "rocket", "咖啡": "coffee", "星空": "starry sky", "城堡": "castle",
                 "独角兽": "unicorn", "蛋糕": "cake", "汉堡": "burger", "狐狸": "fox", "兔子": "bunny",
                 "老虎": "tiger", "鲸鱼": "whale", "天空": "sky", "海滩": "beach", "帽子": "hat", "墨镜": "sunglasses",
                 "背包": "backpack", "沙发": "sofa", "花": "flowers", "月亮": "moon", "龙": "dragon"}
ENGLISH_VERBS = {"帮我画": ["pls draw ", "help me draw ", "draw me "], "画": ["draw ", "Draw "],
                 "生成": ["generate ", "make me "], "来": ["give me ", "make me "], "做": ["make ", "design "],
                 "设计": ["design ", "Design "], "把": ["pls 把", "please 把"], "给": ["pls 给"]}


def slot_spans(text, slots):
    return located_like_rust(text, slots)


def shifted(spans, at, by):
    return {k: (a + by if a >= at else a, b + by if b > at or (b == at and a >= at) else b) for k, (a, b) in spans.items()}


def checked(text, slots, expected):
    """The row if every slot is found at `expected`, else None."""
    found = located_like_rust(text, slots)
    if found != expected:
        return None
    return {"text": text, "intent": ROW_INTENT[0], "slots": {k: slots[k] for k in ORDER if k in slots}}


ROW_INTENT = [None]


def with_preamble(row, spans):
    pool = EDIT_PREAMBLES if row["intent"].startswith("edit") and R.random() < 0.7 else PREAMBLES
    preamble = R.choice(pool)
    if R.random() < 0.3:
        preamble = preamble.rstrip("，") + R.choice(["。", "！", "，所以", "，想请你"])
    return checked(preamble + row["text"], dict(row["slots"]), shifted(spans, 0, len(preamble)))


def with_emoji(row, spans):
    text = row["text"]
    emoji = R.choice(EMOJIS) * R.choice([1, 1, 1, 2, 3])
    text_spans = [(k, v) for k, v in spans.items() if k != "count"]
    if text_spans and R.random() < 0.7:
        _, (_, end) = R.choice(text_spans)
    else:
        end = len(text)
    new = text[:end] + emoji + text[end:]
    return checked(new, dict(row["slots"]), shifted(spans, end, len(emoji)))


def with_english(row, spans):
    slots = dict(row["slots"])
    text = row["text"]
    choices = []
    style = slots.get("style")
    if isinstance(style, str) and style in ENGLISH_STYLES:
        choices.append(("style", style, R.choice(ENGLISH_STYLES[style])))
    for name in ("subject", "target", "content"):
        value = slots.get(name)
        if isinstance(value, str):
            for zh in sorted(ENGLISH_NOUNS, key=len, reverse=True):
                if zh in value and (value == zh or len(zh) >= 2):
                    choices.append((name, zh, ENGLISH_NOUNS[zh]))
                    break
    if not choices:
        return None
    name, zh, en = R.choice(choices)
    start, end = spans[name]
    value = slots[name]
    position = value.index(zh)
    before, after = value[:position], value[position + len(zh):]
    # A space between an English word and Chinese is optional, as people type it.
    left = " " if before and R.random() < 0.3 else ""
    right = " " if after and R.random() < 0.3 else ""
    new_value = before + left + en + right + after
    slots[name] = new_value
    new_text = text[:start] + new_value + text[end:]
    expected = shifted(spans, end, len(new_value) - len(value))
    expected[name] = (start, start + len(new_value))
    return checked(new_text, slots, expected)


def with_english_verb(row, spans):
    text = row["text"]
    for zh in sorted(ENGLISH_VERBS, key=len, reverse=True):
        if text.startswith(zh) and all(a >= len(zh) for a, _ in spans.values()):
            en = R.choice(ENGLISH_VERBS[zh])
            return checked(en + text[len(zh):], dict(row["slots"]), shifted(spans, 0, len(en) - len(zh)))
    return None


PERSON_ATTRIBUTES = """长发 短发 卷发 马尾辫 双马尾 寸头 戴眼镜 戴贝雷帽 戴围巾 微笑 大笑 托腮 侧身 正脸 半身
全身 背影 白衬衫 牛仔外套 格子衬衫 穿校服 穿卫衣 抱着书 拿着相机 回头看 低着头 眼神坚定 有雀斑 有酒窝 阳光下
黄昏 室内 窗边 站着 坐着""".split()
THING_ATTRIBUTES = """蓝色的 黄的 红色 绿色的 金色 白色的 紫色的 发光的 透明的 巨大的 小小的 毛茸茸的 两层 巧克力味的
热气腾腾 刚出炉 特写 远景 俯视 夜晚 清晨 下着雪 下着小雨 阳光明媚 雾蒙蒙的 安静 热闹 没有人 干净一点
细节多一点 高清 温馨 梦幻 复杂一点 简单点 颜色亮一点 暗一点 有光影""".split()
POSTER_ATTRIBUTES = """买一送一 全场八折 第二杯半价 满199减30 限时三天 红金配色 突出主题 字要大 喜庆 大气 简洁
放二维码 留出写字的位置 蓝色调 暖色调 活泼一点 高端一点 文字少一点""".split()
ATTRIBUTE_SEPARATORS = [" ", " ", " ", "，", "，", "  ", "。"]


def with_attributes(row, spans):
    """Unlabelled attributes after the subject, set off by spaces or commas."""
    if not row["intent"].startswith("generate") or "subject" not in spans:
        return None
    text = row["text"]
    _, end = spans["subject"]
    pool = {"generate.portrait": PERSON_ATTRIBUTES, "generate.poster": POSTER_ATTRIBUTES}.get(
        row["intent"], THING_ATTRIBUTES)
    words = R.sample(pool, R.choice([1, 1, 2, 2, 3]))
    separator = R.choice(ATTRIBUTE_SEPARATORS)
    insert = "".join(separator + w for w in words)
    if end < len(text) and text[end] not in "，,。 ":
        # The subject runs on into an output noun or a tail: attributes go last.
        at = len(text)
        if text[-1] in "，。！～?？!":
            at -= 1
    else:
        at = end
    new = text[:at] + insert + text[at:]
    return checked(new, dict(row["slots"]), shifted(spans, at, len(insert)))


# ------------------------------------------------------------------ templates

COVER_TOPICS = """周末露营清单 考研经验分享 新手化妆教程 一周减脂餐 租房避坑指南 秋冬穿搭 读书笔记 城市徒步路线
宝宝辅食 手账排版 咖啡入门 宿舍改造 面试技巧 旅行vlog 雨天摄影 年度好物 极简生活 早餐做法 猫咪日常
健身打卡 留学申请 办公室好物""".split()
COVER_USES = ["小红书封面", "公众号封面", "视频封面", "B站封面", "抖音封面", "公众号首图", "文章头图", "笔记封面"]
KEYWORD_POSTERS = ["海报", "宣传海报", "活动海报", "展板", "横幅", "易拉宝", "邀请函"]
KEYWORD_SIZES = ["", "", "竖版", "横版", "3:4", "9:16", "16:9", "A3", "竖屏", "方形"]


def keyword_request():
    """A use, the theme and a size, set off by spaces (no request verb)."""
    size = R.choice(KEYWORD_SIZES)
    separator = R.choice([" ", " ", "，"])
    if R.random() < 0.5:
        use = R.choice(COVER_USES)
        topic = R.choice(COVER_TOPICS)
        parts = [use, topic] if R.random() < 0.8 else [topic, use]
        slots = {"subject": topic}
    else:
        event = R.choice(EVENTS)
        theme = R.choice(POSTER_THEMES)
        parts = [event + R.choice(KEYWORD_POSTERS), R.choice(["主题是", "主题：", "主题"]) + theme]
        slots = {"subject": theme}
    if size:
        parts.append(size)
        slots["aspect"] = size
    return separator.join(parts), slots



EVENTS = FESTIVALS + [b + p for b in BUSINESSES for p in ("开业", "周年庆", "店庆")] + PUBLIC_CAUSES + """
品牌发布会 秋季新品发布会 音乐节 读书节 校园歌手大赛 马拉松 动漫展 科技峰会 开学季 毕业季 招聘会 家长会
运动会 篮球联赛 年终盛典 电竞比赛""".split()
PEOPLE = ["妈妈", "我妈", "爸爸", "老公", "老婆", "女朋友", "男朋友", "闺蜜", "老师", "奶奶", "客户", "同事"]
GIFT_THEMES = {"生日快乐": "生日", "母亲节快乐": "母亲节", "父亲节快乐": "父亲节", "结婚纪念日": "纪念日",
               "教师节快乐": "教师节", "新年快乐": "新年", "情人节快乐": "情人节", "早日康复": "康复"}
PICTURE_QUESTIONS = """这张图里的人是谁 图片上写的是什么字 这张照片是在哪里拍的 图里的猫是什么品种 这幅画是谁画的
帮我识别一下图片里的文字 图上的英文是什么意思 这张图是用什么软件做的 这张照片的分辨率够打印吗 图里这道菜叫什么
这张海报上的字体叫什么 你看这张图好看吗 这张图里一共有几个人 图片里这座山是哪座山 这张照片是真的还是P的
帮我看看这张图有什么问题 这张图的配色用了哪些颜色 图中的花是什么花 这张截图里的报错是什么意思 这个logo是哪个牌子的
帮我把图片里的文字翻译成英文 把这张海报上的英文翻译成中文 图里的日文是什么意思，帮我翻译一下 把截图里的文字提取出来
帮我把这张菜单翻译成中文 这张图上的字能帮我转成文字吗 把照片里的表格内容整理成Excel 帮我读一下图片里的二维码
给这张图写一段朋友圈文案 这张照片适合配什么音乐 这张图能当头像吗 这两张图哪张更好看一些 帮我描述一下这张图的内容""".split()


def template_rows(n):
    rows = []
    for _ in range(n):
        kind = R.choices(range(6), weights=[4, 3, 3, 4, 3, 2])[0]
        if kind == 0:
            event = R.choice(EVENTS)
            noun = R.choice(["主视觉", "主KV", "KV", "活动主视觉", "主视觉海报", "视觉主图", "kv"])
            lead = R.choice(["帮我出一版", "做个", "设计一张", "想要一个", "", "给我弄个", "来一版"])
            tail = R.choice(["", "，大气一点", "，要有冲击力", "，横版", "，竖版", "，科技感强一点"])
            text = lead + event + R.choice(["", "的"]) + noun + tail
            slots = {"subject": event}
            if tail == "，横版" or tail == "，竖版":
                slots["aspect"] = tail[1:]
            rows.append(("generate.poster", text, slots))
        elif kind == 1:
            person = R.choice(PEOPLE)
            theme = R.choice(sorted(GIFT_THEMES))
            noun = R.choice(["海报", "贺卡", "卡片", "祝福图", "图"])
            lead = R.choice(["给" + person + "做一张", "想送" + person + "一张", "做张送给" + person + "的",
                             "帮我画一张送" + person + "的", person + "过生日，想做一张" if theme == "生日快乐" else "做一张给" + person + "的"])
            style = R.choice(["", "", "水彩", "手绘", "卡通"])
            text = lead + theme + noun + (("，" + style + "风格") if style else "")
            slots = {"subject": theme}
            if style:
                slots["style"] = style
            rows.append(("generate.poster", text, slots))
        elif kind == 2:
            subject = R.choice(BG_SUBJECTS)
            use = R.choice(["PPT底图", "底图", "海报底图", "课件底图", "直播间底图", "名片底图", "长图底图", "邀请函底图"])
            form = R.choice([use + "，" + subject, "做一张" + subject + "的" + use, "来个" + use + "，要" + subject,
                             "需要一张" + use + "：" + subject])
            rows.append(("generate.background", form, {"subject": subject}))
        elif kind == 5:
            # The purpose joined to the event stays in the subject (… 宣传海报 → X宣传).
            event = R.choice(EVENTS)
            purpose = R.choice(["宣传", "活动", "邀请", "欢迎", "推广", "招募", "报名", "上新", "预告"])
            noun = R.choice(["海报", "图", "横幅", "长图", "展板", "主图", "宣传图"])
            lead = R.choice(["帮我做张", "做一张", "来个", "设计一个", "需要一张", "想做个", ""])
            tail = R.choice(["", "，竖版", "，横版", " 贴在门口", "，发群里用", " 喜庆一点"])
            text = R.choice(["", R.choice(PREAMBLES)]) + lead + event + purpose + noun + tail
            slots = {"subject": event + purpose}
            if tail in ("，竖版", "，横版"):
                slots["aspect"] = tail[1:]
            rows.append(("generate.poster", text, slots))
        elif kind == 4:
            text, slots = keyword_request()
            rows.append(("generate.poster", text, slots))
        else:
            text = R.choice(PICTURE_QUESTIONS)
            if R.random() < 0.3:
                text = R.choice(["你好，", "请问", "麻烦问一下，", "在吗？", "我想问下，"]) + text
            text += R.choice(["", "？", "?", "呀", "～"])
            rows.append(("other", text, {}))
    out = []
    for intent, text, slots in rows:
        ROW_INTENT[0] = intent
        spans = located_like_rust(text, slots)
        if spans is None:
            continue
        out.append({"text": text, "intent": intent, "slots": {k: slots[k] for k in ORDER if k in slots}})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--variants", type=int, default=3000)
    parser.add_argument("--templates", type=int, default=1100)
    args = parser.parse_args()
    R.seed(args.seed)
    base = [json.loads(line) for line in (HERE / "train.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    seen = {row["text"] for row in base}
    made = []
    makers = [(with_preamble, 5), (with_emoji, 3), (with_english, 3), (with_english_verb, 1), (with_attributes, 3)]
    attempts = 0
    while len(made) < args.variants and attempts < args.variants * 20:
        attempts += 1
        row = R.choice(base)
        spans = located_like_rust(row["text"], row["slots"])
        if spans is None:
            continue
        maker = R.choices([m for m, _ in makers], weights=[w for _, w in makers])[0]
        ROW_INTENT[0] = row["intent"]
        new = maker(row, spans)
        if new is None or new["text"] in seen:
            continue
        seen.add(new["text"])
        made.append(new)
    for row in template_rows(args.templates):
        if row["text"] not in seen:
            seen.add(row["text"])
            made.append(row)
    R.shuffle(made)
    for row in made:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
