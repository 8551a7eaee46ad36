#!/usr/bin/env python3
"""Generates the labelled training corpus for huatu's intent + slot model.

    python3 data/intents/generate_corpus.py --seed 7 --per-intent 1000 > data/intents/train.jsonl

Each instruction is assembled from chunks, some of which are slot values, so the labels
are exact by construction. Wording varies on purpose: polite, terse and colloquial
requests, extra chatter, English words (logo, PPT, banner, 16:9), typos, traditional
characters, negations and several clauses. The labels follow INTENTS.md's span rules.
The hand-written dev set (dev.jsonl) is never read here.
"""
import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lexicon import *  # noqa: E402,F401,F403

ROOT = Path(__file__).resolve().parents[2]
SIMPLIFIED_TO_TRADITIONAL = {}
for line in (ROOT / "crates/agent/src/traditional.txt").read_text(encoding="utf-8").splitlines():
    if line and not line.startswith("#") and len(line) >= 2:
        SIMPLIFIED_TO_TRADITIONAL.setdefault(line[1], line[0])

CN = {2: ["两", "二", "2"], 3: ["三", "3"], 4: ["四", "4"], 5: ["五", "5"], 6: ["六", "6"],
      8: ["八", "8"], 9: ["九", "9"], 10: ["十", "10"], 12: ["十二", "12"], 20: ["二十", "20"]}
TYPOS = {"画": "花", "张": "章", "报": "抱", "图": "涂", "做": "作", "帮": "邦", "个": "各",
         "设": "社", "计": "记", "景": "境", "壁": "璧", "纸": "只", "像": "象", "换": "唤",
         "成": "城", "把": "吧", "加": "家", "掉": "调", "请": "情", "生": "声", "风": "疯"}

R = random.Random()

ALL_NOUNS = sorted(set(FREE_ANIMALS + FREE_OBJECTS + FREE_FOODS + PERSON_NOUNS + ICON_THINGS + BG_SUBJECTS))
CHAR_POOL = sorted(set("".join(ALL_NOUNS + FESTIVALS + BUSINESSES + PRODUCTS + PUBLIC_CAUSES)))


def pseudo_word():
    """Random characters: teaches the tagger the pattern around a slot, not the words."""
    return "".join(R.choice(CHAR_POOL) for _ in range(R.choice([2, 2, 3, 3, 4, 5])))


def any_noun(specific, p_any=0.35, p_pseudo=0.12):
    r = R.random()
    if r < p_pseudo:
        return pseudo_word()
    if r < p_pseudo + p_any:
        return pick(ALL_NOUNS)
    return pick(specific)


def pick(items):
    return R.choice(items)


def maybe(p, text, otherwise=""):
    return text if R.random() < p else otherwise


class Sample:
    """An instruction under construction: chunks of (text, slot, count)."""

    def __init__(self, intent):
        self.intent = intent
        self.chunks = []

    def add(self, text, slot=None, count=None):
        if text:
            self.chunks.append([text, slot, count])
        return self

    def text(self):
        return "".join(c[0] for c in self.chunks)


# ---------------------------------------------------------------- shared pieces

def head(s, p=0.35):
    if R.random() < p:
        s.add(pick(CHATTER_HEAD))


def tail(s, p=0.3):
    if R.random() < p:
        s.add(pick(CHATTER_TAIL))


def request(s, verbs=None, one_p=0.6, classifier="张"):
    """Polite prefix + verb + 一张, all outside slots."""
    polite = pick(["", "", "请", "麻烦", "帮我", "请帮我", "能不能帮我", "可以帮我", "我想", "我想要",
                   "我需要", "给我", "帮忙", "麻烦你", "求", "求一张" if classifier == "张" else "求一个",
                   "我要", "想要", "帮我们", "劳烦", "拜托", "快帮我", "给我们"])
    verb = pick(verbs or ["生成", "画", "做", "来", "整", "设计", "弄", "出", "搞", "制作", "创作", "绘制", "帮我画",
                          "生成一下", "画一下", "做一下", "P", "作"])
    if polite.startswith("求一"):
        return s.add(polite)
    if polite.startswith("求") or polite in ("我要", "想要", "我想要", "我需要") and R.random() < 0.5:
        verb = ""
    one = maybe(one_p, pick(["一" + classifier, classifier, "个", "一个", "一幅", "幅", "份"]) if classifier == "张"
                else pick(["一" + classifier, classifier, "一款", "款"]))
    s.add(polite + verb + one)


def numeral(n):
    return pick(CN.get(n, [str(n)]))


def count_phrase(s, kind="张", before=True):
    n = pick([2, 2, 3, 3, 4, 4, 5, 6, 8, 9, 10, 12, 20])
    lead = pick(["来", "给我", "出", "生成", "要", "做", "画", "一共", "", "", "帮我出"]) if not before else ""
    s.add(lead)
    s.add(numeral(n), "count", n)
    s.add(pick([kind, kind, "张", "幅", "个", "款", "份", "套", "版"]) if kind != "个" else pick(["个", "款", "套"]))
    return n


def style_phrase(s, styles=None, allow_keep=True):
    """A style chunk with its suffix variants."""
    if allow_keep and R.random() < 0.15:
        s.add(pick(["", "要", "做成", "用", "整体"]))
        s.add(pick(KEEP_FENG), "style")
        s.add(pick(["", "的", "一点", "的感觉"]))
        return
    style = pick(styles or STYLES)
    form = R.randrange(9)
    if form == 0:
        s.add(style, "style").add("风格")
    elif form == 1:
        s.add(style, "style").add(pick(["画风", "风"]))
    elif form == 2:
        s.add(pick(["用", "要", "做成", "画成", "来点"])).add(style, "style").add(pick(["风格", "的风格", "的感觉", "画风"]))
    elif form == 3:
        s.add("风格是" if R.random() < 0.5 else "风格：").add(style, "style")
    elif form == 4:
        s.add(style, "style").add(pick(["效果", "质感", "渲染" if style in ("3D", "C4D", "写实") else "效果"]))
    elif form == 5:
        s.add(style, "style").add(pick(["的", "风的", "风格的"]))
    else:
        s.add(style, "style")


def aspect_phrase(s):
    form = R.randrange(6)
    if form == 0:
        s.add(pick(ORIENTATIONS), "aspect").add(pick(["", "的"]))
    elif form == 1:
        s.add(pick(["比例", "尺寸", "尺寸是", "比例是", "按", "", ""])).add(pick(RATIOS), "aspect").add(pick(["", "的", "比例", "尺寸"]))
    elif form == 2:
        # both: the ratio wins
        s.add(pick(ORIENTATIONS)).add(pick(["", "，", " "])).add(pick(RATIOS), "aspect")
    elif form == 3:
        s.add(pick(["做成", "要", "用", "出"])).add(pick(ORIENTATIONS), "aspect")
    elif form == 4:
        s.add(pick(RATIOS), "aspect").add(pick(["高清", "大小", "分辨率", ""]))
    else:
        s.add(pick(ORIENTATIONS), "aspect")


def negation(s):
    s.add(pick(["，不要", "，别用", "，不要用", "，别搞成", "，千万别", "，不需要", "，拒绝"]) +
          pick(STYLES + ["卡通", "写实", "人物", "文字", "太花哨", "黑色背景", "水印"]) + maybe(0.5, "风格"))


def extras(s, intent_kind, has_style=True, has_aspect=True, has_count=True):
    """Optional trailing clauses: style, aspect, count, quality, negation, chatter."""
    parts = []
    if has_style and R.random() < 0.25:
        parts.append("style")
    if has_aspect and R.random() < 0.2:
        parts.append("aspect")
    if has_count and R.random() < 0.12:
        parts.append("count")
    if R.random() < 0.12:
        parts.append("quality")
    if R.random() < 0.05:
        parts.append("negation")
    R.shuffle(parts)
    for part in parts:
        sep = pick(["，", "，", ",", " ", "；", "、", "。"])
        if part == "style":
            s.add(sep)
            style_phrase(s, ICON_STYLES if intent_kind == "icon" else None)
        elif part == "aspect":
            s.add(sep)
            aspect_phrase(s)
        elif part == "count":
            s.add(sep)
            count_phrase(s, "个" if intent_kind == "icon" else "张", before=False)
        elif part == "quality":
            s.add(pick(QUALITY_TAILS))
        else:
            negation(s)
    tail(s, 0.15)


# ---------------------------------------------------------------- generate.*

def poster_subject():
    kind = R.randrange(7)
    if kind == 0:
        return pick(FESTIVALS) + maybe(0.8, pick(FESTIVE_PURPOSES))
    if kind == 1:
        return pick(FESTIVALS)
    if kind == 2:
        return pick(BUSINESSES) + pick(BUSINESS_PURPOSES)
    if kind == 3:
        return pick(PRODUCTS) + pick(PRODUCT_PURPOSES)
    if kind == 4:
        return pick(PUBLIC_CAUSES) + maybe(0.3, pick(["宣传", "公益", "倡议"]))
    if kind == 5:
        return pick(["公司", "学校", "社区", "医院", "银行", "工会", "团委", "学生会"]) + pick(
            ["年会", "十周年庆典", "运动会", "文艺晚会", "招聘会", "开放日", "家长会", "迎新晚会", "表彰大会", "周年庆"])
    return pick(FESTIVALS) + pick(["全家福", "团圆饭", "舞狮", "放烟花", "吃饺子", "赏月", "划龙舟", "包粽子"])


def fuse_purpose_nouns(s):
    """INTENTS.md keeps purpose words fused with the theme (元宵祝福图 → 元宵祝福), so a
    noun such as 祝福图 or 宣传海报 right after the subject joins it; after 的 it does not."""
    for i in range(1, len(s.chunks)):
        text, slot, _ = s.chunks[i]
        before = s.chunks[i - 1]
        if slot is None and before[1] == "subject" and text[:2] in ("祝福", "宣传"):
            before[0] += text[:2]
            s.chunks[i][0] = text[2:]
    s.chunks = [c for c in s.chunks if c[0]]


def generate_poster():
    s = Sample("generate.poster")
    head(s)
    subject = poster_subject()
    noun = pick(POSTER_NOUNS)
    form = R.randrange(8)
    if form == 0:
        request(s)
        s.add(subject, "subject").add(maybe(0.3, "的")).add(noun)
    elif form == 1:
        s.add(subject, "subject").add(maybe(0.3, "的")).add(noun)
    elif form == 2:
        request(s)
        s.add(noun).add(pick(["，主题是", "，主题：", "，内容是", "，关于"])).add(subject, "subject")
    elif form == 3:
        request(s)
        s.add(subject, "subject").add("主题的" + noun)
    elif form == 4:
        n_form = R.random() < 0.5
        if n_form:
            s.add(pick(["给我", "来", "帮我做", "生成", "出", "做"]))
            n = pick([2, 3, 4, 5, 6])
            s.add(numeral(n), "count", n).add(pick(["张", "幅", "款", "版", "套"]))
        else:
            request(s)
        s.add(pick(MOODS) if R.random() < 0.3 else "")
        s.add(subject, "subject").add(maybe(0.3, "的")).add(noun)
    elif form == 5:
        s.add(pick(["", "我们", "我家", "我的"])).add(pick(["店", "公司", "学校", "单位", "社区"]) + pick(["要搞活动，", "要办活动，", "要用，", "有活动，"]))
        request(s, ["做", "出", "设计", "生成", "来"])
        s.add(subject, "subject").add(noun)
    elif form == 6:
        s.add(pick(["", "做个", "要个", "来个"])).add(pick(["朋友圈用的", "电商用的", "公众号用的", "门店用的", "微博用的",
                                                        "小红书用的", "手机", "朋友圈", "电梯", "地铁"]))
        s.add(subject, "subject").add(noun)
    else:
        request(s)
        s.add(subject, "subject").add(noun).add(pick(["，画一个", "，要有", "，上面画", "，配上"])).add(
            pick(PERSON_NOUNS + ["灯笼", "烟花", "月亮", "红包", "福字"]))
    fuse_purpose_nouns(s)
    extras(s, "poster", has_count=not any(c[1] == "count" for c in s.chunks))
    return s


def person_subject():
    kind = R.randrange(4)
    if kind == 0:
        return pick(PERSON_MODIFIERS) + pick(PERSON_NOUNS)
    if kind == 1:
        return pick(PERSON_NOUNS) + pick(PERSON_ACTIONS)
    if kind == 2:
        return pick(PERSON_NOUNS)
    return pick(PERSON_MODIFIERS) + pick(["", "年轻", "年迈的", "胖胖的", "高个子"]) + pick(PERSON_NOUNS)


def generate_portrait():
    s = Sample("generate.portrait")
    head(s)
    subject = person_subject()
    noun = maybe(0.4, pick(PORTRAIT_NOUNS))
    form = R.randrange(6)
    if form == 0:
        request(s, classifier="张")
        s.add(maybe(0.2, pick(MOODS))).add(subject, "subject").add(maybe(0.3, "的") + noun if noun else "")
    elif form == 1:
        s.add(subject, "subject").add(maybe(0.4, "的" + pick(PORTRAIT_NOUNS)))
    elif form == 2:
        request(s, ["画", "生成", "来", "整", "画个", "做"], classifier="张")
        style_phrase(s)
        s.add(maybe(0.5, "的")).add(subject, "subject").add(noun)
    elif form == 3:
        s.add(pick(["给我", "来", "生成", "画", "出"]))
        n = pick([2, 3, 4, 5, 6])
        s.add(numeral(n), "count", n).add(pick(["张", "幅", "版"]))
        s.add(subject, "subject").add(maybe(0.5, "的")).add(pick(PORTRAIT_NOUNS))
    elif form == 4:
        request(s, ["画", "画一个", "画个", "生成一个", "来个", "整个"], one_p=0.0)
        s.add(subject, "subject").add(pick(["，背景是", "，背景要", "，身后是", "，站在"])).add(pick(BG_SUBJECTS[:40]))
    else:
        s.add(pick(["我想要一个", "帮我画一位", "请画一位", "生成一位", "画一名", "来一位"]))
        s.add(subject, "subject")
    extras(s, "portrait", has_count=not any(c[1] == "count" for c in s.chunks),
           has_style=not any(c[1] == "style" for c in s.chunks))
    return s


def generate_background():
    s = Sample("generate.background")
    head(s)
    usage = pick(BG_USAGES)
    subject = any_noun(BG_SUBJECTS, 0.15, 0.08) if R.random() < 0.85 else None
    form = R.randrange(7)
    if form == 0:
        request(s)
        if subject:
            s.add(maybe(0.2, pick(MOODS))).add(subject, "subject").add(maybe(0.4, "的"))
        s.add(usage)
    elif form == 1:
        s.add(usage).add(pick(["，", "：", " ", "，要", "，内容是", "，画", "，主题"])).add(subject or pick(["", "好看点"]), "subject" if subject else None)
    elif form == 2:
        request(s)
        s.add(pick(["", "晚会用的", "年会用的", "开会用的", "直播用的", "课件用的", "PPT用的", "手机用的", "电脑用的"]))
        if subject:
            s.add(subject, "subject").add(maybe(0.5, "的"))
        s.add(pick(["背景", "背景图", "底图", "壁纸", "纹理"]))
    elif form == 3:
        request(s)
        style_phrase(s)
        s.add(maybe(0.5, "的"))
        if subject and R.random() < 0.6:
            s.add(subject, "subject").add(maybe(0.4, "的"))
        s.add(usage)
    elif form == 4:
        if subject:
            s.add(subject, "subject").add(pick(["主题的", "的", "", "风景的"]) if subject else "")
        s.add(usage)
    elif form == 5:
        s.add(pick(["给", "帮", "为"])).add(pick(["我的手机", "电脑", "平板", "我的直播间", "下周的会议", "年会舞台", "PPT",
                                                  "公司官网", "孩子的房间"]))
        s.add(pick(["做", "换", "生成", "配", "整"]) + pick(["一张", "个", "张", ""]))
        s.add(pick(["背景", "壁纸", "背景图", "底图", "墙纸"]))
        if subject:
            s.add(pick(["，", "，要", "，", "：", "，画"])).add(subject, "subject")
    else:
        s.add(pick(["来", "整", "要", "求"]) + pick(["一张", "张", "几张"]))
        if subject:
            s.add(subject, "subject").add(pick(["的", ""]))
        s.add(usage)
    extras(s, "background")
    return s


def generate_icon():
    s = Sample("generate.icon")
    head(s)
    owner = R.random() < 0.5
    subject = pick(ICON_OWNERS) if owner else any_noun(ICON_THINGS, 0.2, 0.1)
    if R.random() < 0.08:
        subject = "字母" + pick("ABCDEFGHKLMNPRSTWXYZ")
    noun = pick(ICON_NOUNS)
    form = R.randrange(7)
    if form == 0:
        request(s, ["设计", "画", "做", "生成", "来", "弄", "整", "出"], classifier="个")
        s.add(subject, "subject").add(maybe(0.4, "的")).add(noun)
    elif form == 1:
        s.add(subject, "subject").add(maybe(0.2, "的")).add(noun)
    elif form == 2:
        s.add(pick(["给", "帮", "为"])).add(maybe(0.4, pick(["我的", "我们的", "我们", "我家", ""])))
        s.add(subject if owner else pick(ICON_OWNERS), "subject")
        s.add(pick(["设计", "画", "做", "弄", "整"]) + pick(["一个", "个", "一款", ""]) + pick(ICON_NOUNS + ICON_BADGE_NOUNS))
        if not owner and R.random() < 0.3:
            s.chunks[-2][1] = "subject"
    elif form == 3:
        request(s, ["设计", "做", "生成", "画"], classifier="个")
        style_phrase(s, ICON_STYLES)
        s.add(maybe(0.6, "的")).add(subject, "subject").add(noun)
    elif form == 4:
        request(s, ["设计", "做", "出", "来"], classifier="个")
        s.add(noun).add(pick(["，主题是", "，内容是", "，图案是", "，画", "，要"])).add(subject, "subject")
    elif form == 5:
        s.add(pick(["给我", "来", "设计", "生成", "做", "出"]))
        n = pick([2, 3, 4, 5, 6, 8, 10, 12])
        s.add(numeral(n), "count", n).add(pick(["个", "款", "套"]))
        s.add(subject, "subject").add(maybe(0.3, "的")).add(noun)
    else:
        badge_owner = pick(["篮球队", "足球队", "三年二班", "高一三班", "初二一班", "学校", "实验小学", "社团", "运动会",
                            "车队", "合唱团", "公司", "动漫社", "登山队"])
        request(s, ["设计", "做", "画", "出"], classifier="个")
        s.add(badge_owner, "subject").add(maybe(0.3, "的")).add(pick(ICON_BADGE_NOUNS + ["徽章", "logo", "标志"]))
    extras(s, "icon", has_aspect=R.random() < 0.3,
           has_count=not any(c[1] == "count" for c in s.chunks),
           has_style=not any(c[1] == "style" for c in s.chunks))
    return s


def free_subject():
    if R.random() < 0.08:
        return pseudo_word()
    kind = R.randrange(7)
    if kind == 0:
        return pick(FREE_ANIMALS) + maybe(0.7, pick(ANIMAL_ACTIONS))
    if kind == 1:
        return maybe(0.5, pick(ANIMAL_ACTIONS) + "的") + pick(FREE_ANIMALS)
    if kind == 2:
        return maybe(0.5, pick(FREE_OBJECT_MODIFIERS)) + pick(FREE_OBJECTS)
    if kind == 3:
        return maybe(0.3, pick(["热气腾腾的", "刚出炉的", "冒着热气的", "精致的"]).replace("精致的", "摆盘精致的")) + pick(FREE_FOODS)
    if kind == 4:
        return pick(FREE_SCENES)
    if kind == 5:
        return pick(["两只", "三只", "一群", "五只"]).replace("一群", "一群") + pick(FREE_ANIMALS) + pick(
            ["在睡觉", "在打架", "在玩耍", "在吃东西", "在晒太阳", "在赛跑"])
    return pick(FREE_OBJECTS + FREE_ANIMALS) + pick(["在", "漂浮在", "停在", "倒映在"]) + pick(
        ["月球上", "海面上", "云端", "沙漠里", "雪山顶上", "城市上空", "森林深处", "外太空"])


def generate_free():
    s = Sample("generate.free")
    head(s)
    subject = free_subject()
    numbered = subject[:2] in ("两只", "三只", "五只")
    form = R.randrange(6)
    one = pick(["一只", "一幅", "一张", "一个", "一座", "一辆", "一碗", "一盘", "只", "张", "个", "幅", ""])
    if form == 0:
        request(s, ["画", "生成", "来", "画个", "帮我画", "创作", "绘制", "整", "给我画"], one_p=0.0)
        s.add(one if not numbered else "").add(maybe(0.2, pick(MOODS))).add(subject, "subject")
        s.add(maybe(0.3, pick(["的图", "的图片", "的画", "的照片", "的画面", "的场景", "的插画"])))
    elif form == 1:
        s.add(subject, "subject")
    elif form == 2:
        request(s, ["画", "生成", "来", "整"], one_p=0.3)
        style_phrase(s)
        s.add(maybe(0.6, "的")).add(subject, "subject")
    elif form == 3 and not numbered:
        s.add(pick(["给我", "来", "生成", "画", "出", "帮我生成"]))
        n = pick([2, 3, 4, 5, 6, 8])
        s.add(numeral(n), "count", n).add(pick(["张", "幅", "版", "张不同的"]))
        s.add(subject, "subject")
    elif form == 4:
        s.add(pick(["帮我画一幅画，内容是", "画一张图：", "想看", "我想看看", "生成一张图，内容：", "画一下",
                    "帮我想象一下并画出", "能画出", "随便画点什么，比如", "脑洞一下，画"])).add(subject, "subject")
        s.add(maybe(0.4, pick(["吗", "的样子", "，谢谢"])))
    else:
        request(s, ["画", "生成", "来", "画个"], one_p=0.0)
        s.add(one if not numbered else "").add(subject, "subject").add(pick(["，用", "，要", "，做成"]))
        s.add(pick(STYLES), "style").add(pick(["风格", "的风格", "", "画风"]))
    extras(s, "free", has_count=not numbered and not any(c[1] == "count" for c in s.chunks),
           has_style=not any(c[1] == "style" for c in s.chunks))
    return s


# ---------------------------------------------------------------- edit.*

EI_TARGETS = """天空 背景 头发 她的头发 他的衣服 他的衬衫 桌上的花瓶 墙壁 地板 草地 河水 汽车 车的颜色 衣服
帽子 眼睛 嘴唇 猫 狗 小狗 人物 人物的表情 窗外的风景 沙发 窗帘 杯子 杯子里的茶 树 树叶 秋天的树叶
天气 季节 白天 冬天 湖面 大海 山 建筑 房子 路灯 招牌 标题文字 标题 文字 按钮 菜单栏 头像
裙子 鞋子 领带 围巾 她的围巾 他的发型 女孩 男孩 老人 模特 桌子 地面 远处的山 左边的那棵树
右边的人 前景 背景里的电线杆 天上的云 水面 衬衫颜色 皮肤 脸 表情 手里的杯子 手机屏幕""".split()

EI_CONTENTS = """晚霞 星空 蓝天白云 纯白色 红色 蓝色 绿色 金色 雪地 夏天 冬天 夜晚 黄昏 雨天 大海 沙滩
墨镜 帽子 圣诞帽 口罩 眼镜 皇冠 围巾 西装 连衣裙 红色连衣裙 汉服 婚纱 校服 微笑 大笑 侧脸
花 鲜花 月亮 彩虹 烟花 雪花 小猫 飞鸟 热气球 城堡 森林 樱花树 中式建筑 欧式建筑 木地板
清澈的蓝色 浅绿色 粉色 黑白 暖色调 冷色调 霓虹灯 灯笼 圆角 签名 水印 日期 二维码 蝴蝶结""".split()

POSITIONS = """右下角 左上角 右上角 左下角 底部 顶部 中间 左边 右边 正中间 角落 上方 下方""".split()

IMAGE_REFS = ["图里的", "图中的", "图片里的", "图片中的", "照片里的", "照片中的", "原图的", "原图里的", "画面里的",
              "画面中的", "这张图的", "这张照片里的", "图上的", "照片上的", ""]

QUOTES = ["“{}”", "「{}」", "\"{}\"", "'{}'", "：{}"]
QUOTED_TEXTS = """新年快乐 生日快乐 欢迎光临 新品上市 限时特惠 恭喜发财 Happy Birthday 开业大吉 谢谢惠顾
毕业快乐 我爱你 加油 2025 Merry Christmas 中秋快乐 SALE 早安 元旦快乐 新春大吉""".split()


def edit_instruct():
    s = Sample("edit.instruct")
    head(s, 0.25)
    form = R.randrange(10)
    ref = pick(IMAGE_REFS) if R.random() < 0.5 else ""
    pointer = maybe(0.15, pick(["这个", "那个", "这只", "那只", "这些", "那棵"]))
    if form == 0:
        s.add(pick(["把", "将", "帮我把", "请把", "麻烦把", "能不能把", ""])).add(ref).add(pointer)
        s.add(any_noun(EI_TARGETS), "target").add(pick(["换成", "改成", "变成", "替换成", "改为", "换为", "P成", "弄成", "调成"]))
        s.add(maybe(0.2, pick(["一片", "一个", "一只"]))).add(any_noun(EI_CONTENTS), "content").add(maybe(0.2, "的"))
    elif form == 1:
        s.add(pick(["让", "给", "帮", "请让"])).add(ref).add(pick(["他", "她", "女孩", "男孩", "小狗", "猫咪", "模特", "老人", "人物", "宝宝"]), "target")
        s.add(pick(["戴上", "穿上", "拿着", "加上", "戴一副", "戴一顶", "换上", "加一顶", "加一副", "配上"]))
        s.add(pick(["墨镜", "帽子", "圣诞帽", "口罩", "眼镜", "皇冠", "围巾", "西装", "连衣裙", "汉服", "耳环", "项链", "花环", "领结"]), "content")
    elif form == 2:
        s.add(pick(["在", "帮我在", "请在", "往"])).add(pick(["图片", "画面", "照片", ""])).add(pick(POSITIONS), "target")
        s.add(pick(["加", "加个", "加一个", "添加", "放", "放一个", "画一个", "加上", "写上", "加一轮", "加一朵", "补一个"]))
        s.add(any_noun(["签名", "月亮", "太阳", "水印", "日期", "logo文字", "小鸟", "彩虹", "云朵", "花", "星星", "二维码框", "气球"]), "content")
    elif form == 3:
        s.add(pick(["在", "往", "给"])).add(pick(["天空", "桌子", "墙", "草地", "湖面", "她手", "树", "窗台", "沙发"]), "target")
        s.add(pick(["上", "里", "中", ""])).add(pick(["加", "添", "画", "放"]) + pick(["一群", "一只", "一束", "几朵", "一个", "一盆", ""]))
        s.add(any_noun(["飞鸟", "花", "小猫", "热气球", "蝴蝶", "灯笼", "月亮", "彩虹", "植物"]), "content")
    elif form == 4:
        s.add(pick(["去掉", "删除", "删掉", "抹掉", "移除", "P掉", "擦掉", "帮我去掉", "请去除", "把"])).add(ref).add(pointer)
        s.add(any_noun(EI_TARGETS + ["路人", "水印", "电线", "垃圾桶", "文字", "杂物", "痘痘", "皱纹"]), "target")
        if s.chunks[0][0] == "把":
            s.add(pick(["去掉", "删掉", "P掉", "抹掉", "移除"]))
    elif form == 5:
        s.add(pick(["改成", "变成", "转成", "换成", "弄成", "把这张图改成", "把图片变成", "把照片转成", "整张图改成",
                    "把画面改成", "风格改成", "换个", "把原图转成", "帮我转成"]))
        s.add(pick(STYLES), "style").add(pick(["风格", "画风", "风", "效果", "的风格", "", "的感觉"]))
    elif form == 6:
        s.add(pick(["把", "将"])).add(ref).add(pick(EI_TARGETS), "target").add(pick(["文字改成", "改成", "换成", "写成"]))
        s.add(pick(QUOTES).format("\x00"))
        text = pick(QUOTED_TEXTS)
        before, after = s.chunks.pop()[0].split("\x00")
        s.add(before).add(text, "content").add(after)
    elif form == 7:
        s.add(pick(["添加", "加点", "给画面加上", "给照片加", "加个", "加一些"])).add(pick(["下雨", "下雪", "阳光", "光晕", "雾气", "烟花", "樱花飘落", "星光"]), "content")
        s.add(pick(["的效果", "", "的样子", "效果"]))
    elif form == 8:
        s.add(ref).add(any_noun(EI_TARGETS), "target").add(pick(["虚化一点", "调亮一点", "调暗一些", "放大一点", "缩小一点",
                                                           "模糊掉", "再清晰点", "颜色淡一点", "饱和度高一点"]))
    else:
        s.add(pick(["把", "将", "帮我把"])).add(ref).add(pick(EI_TARGETS), "target").add(pick(["染成", "刷成", "涂成", "调成"]))
        s.add(pick(["红色", "蓝色", "金色", "浅绿色", "粉色", "紫色", "黑色", "银色", "暖黄色"]), "content")
    if R.random() < 0.15 and not any(c[1] == "style" for c in s.chunks):
        s.add(pick(["，整体", "，再", "，顺便", "，然后"])).add(pick(["改成", "变成", "转成"])).add(pick(STYLES), "style").add(pick(["风格", "画风", ""]))
    tail(s)
    return s


ER_SOURCES = ["这个", "这张", "这枚", "这件", "这只", "这顶", "附件里的", "附件中的", "附件的", "我上传的", "我发的",
              "我刚发的", "我刚上传的", "图2的", "图二的", "第二张图的", "第二张图里的", "另一张图里的", "参考图里的",
              "下面这张", "我给你的", "我发你的这张", "这张图里的"]
ER_ELEMENTS = """logo 二维码 水印 签名 印章 贴纸 商标 徽章 头像 产品 猫 狗 人物 帽子 衣服 外套 裙子 沙发 花束
图案 花纹 人脸 汽车 公司logo 品牌logo 校徽 吉祥物 文字 LOGO 标志 台灯 杯子 包包 鞋子 手表 月亮 照片""".split()
ER_USER_ELEMENTS = ["我们店的招牌", "我们公司的logo", "本单位的徽标", "我们学校的校徽", "我们品牌的标志", "本公司的商标",
                    "我的签名", "我们的吉祥物"]
ER_TARGETS = """沙发 杯子 桌子 墙 墙上的画 草地 马路 T恤 模特 女孩 小狗 他身上的T恤 桌上的花瓶 客厅里的旧沙发
门头 证件照模板 笔记本电脑 搜索框 天空 人 招牌 屏幕 车身 背景板 相框 盒子 包装盒""".split()


def edit_reference():
    s = Sample("edit.reference")
    head(s, 0.25)
    source = pick(ER_SOURCES)
    element = any_noun(ER_ELEMENTS, 0.3, 0.1)
    if R.random() < 0.1:
        source, element = "", pick(ER_USER_ELEMENTS)
    img = maybe(0.2, pick(["图", "图片", "照片"])) if source else ""
    form = R.randrange(7)
    if form == 0:
        s.add(pick(["把", "将", "帮我把", "请把", "麻烦把"])).add(source).add(element, "content").add(img)
        s.add(pick(["放到", "贴到", "加到", "放在", "放", "P到", "移到", "贴在", "加在", "挪到"]))
        s.add(maybe(0.5, pick(FRAME_REFS))).add(pick(REGIONS), "region")
        s.add(maybe(0.3, pick(["，小一点", "，大一点", "，半透明", "，缩小一些", "，不要挡住人脸", "，对齐一下"])))
    elif form == 1:
        s.add(pick(["用", "拿", "请用", "帮我用"])).add(source or "附件里的").add(maybe(0.5, element, ""), "content")
        if not s.chunks[-1][0]:
            s.chunks.pop()
            s.add(pick(["图", "图片", "照片"]))
        s.add(pick(["替换", "换掉", "盖住", "替换掉", "代替"]))
        if R.random() < 0.5:
            s.add(maybe(0.4, pick(["原图", "图片", "画面"]))).add(pick(REGIONS), "region").add("的")
        s.add(any_noun(ER_TARGETS, 0.3, 0.1), "target")
    elif form == 2:
        s.add(pick(["把", "将"])).add(source).add(element, "content").add(img)
        s.add(pick(["换到", "放到", "加到", "贴到", "P到", "印到", "放进"])).add(maybe(0.4, pick(["原图的", "图里的", "图1的", "第一张图的", "画面里的"])))
        s.add(any_noun(ER_TARGETS, 0.3, 0.1), "target").add(pick(["上", "里", "上面", "中", ""]))
    elif form == 3:
        s.add(source or "这个").add(element, "content").add(pick(["", "帮我", "请", "麻烦"]))
        s.add(pick(["放", "加到", "放到", "贴", "贴在", "放在"])).add(maybe(0.4, pick(FRAME_REFS))).add(pick(REGIONS), "region")
    elif form == 4:
        s.add(pick(["我上传了", "我发了", "附件里有", "我给你了", "这里有"])).add(pick(["一个", "一张", "个", ""])).add(element, "content")
        s.add(pick(["，帮我放在", "，放到", "，贴到", "，加在", "，请放在"])).add(maybe(0.5, pick(FRAME_REFS))).add(pick(REGIONS), "region")
    elif form == 5:
        s.add(pick(["把", "将"])).add(source or "这件").add(pick(["外套", "裙子", "帽子", "衣服", "眼镜", "围巾", "项链", "鞋子"]), "content")
        s.add(pick(["给", "让"])).add(maybe(0.4, pick(["图里的", "原图的", "照片里的"]))).add(pick(["模特", "女孩", "他", "她", "小狗", "人物"]), "target")
        s.add(pick(["穿上", "戴上", "换上", "试穿一下"]))
    else:
        s.add(pick(["参考", "按照", "照着"])).add(source or "附件").add(pick(["", "图", "图片"]))
        s.add(pick(["，把", "，将"])).add(maybe(0.4, pick(["原图", "图片"]))).add(pick(REGIONS), "region").add("的")
        s.add(any_noun(ER_TARGETS, 0.3, 0.1), "target").add(pick(["换掉", "替换掉", "换成它", "换成一样的"]))
    tail(s)
    return s


# ---------------------------------------------------------------- other

OTHER_FIXED = """您好 hi hello 在吗 晚安 谢谢 好的 好的谢谢 收到 嗯 哈哈 拜拜 你是哪位
你叫什么名字 你都会些什么 你是机器人吗 今天几号 现在几点了 今天星期几 我好无聊 陪我聊聊天
给我讲个故事 你真棒 不用了 算了 没事了 重新来 等一下 取消 我不想要了 太贵了 晚上好 中午好
说个段子 你几岁了 你喜欢什么 对 不对 可以 行 明白了 ok""".split()

OTHER_TEMPLATES = [
    ("{w}天气怎么样", ["明天", "北京", "上海", "周末", "深圳明天", "杭州后天"]),
    ("帮我写{w}", ["一首现代诗", "一篇作文", "一封情书", "一份周报", "一段自我介绍", "一封邮件", "个请假条", "一篇关于春节的文章",
                "一段产品文案", "个朋友圈文案", "一段演讲稿", "个故事", "一首关于中秋的诗"]),
    ("给我的{w}写{x}", None),
    ("怎么用{w}", ["PS换天空", "Photoshop修瑕疵", "美图秀秀去水印", "手机拍星空", "剪映剪视频", "Excel做图表", "PPT做动画",
                 "Midjourney", "Stable Diffusion", "ComfyUI", "Lightroom修图", "醒图修人像"]),
    ("什么是{w}", ["扩散模型", "提示词", "负面提示词", "VAE", "CFG", "采样器", "人工智能",
                 "AIGC", "图生图", "inpainting", "分辨率", "矢量图", "像素"]),
    ("{w}是什么意思", ["LoRA", "CFG scale", "denoise", "seed", "steps", "DPM++", "种子", "重绘幅度"]),
    ("帮我{w}", ["翻译这句话", "翻译成英文", "查一下物流", "订个外卖", "算一下这道题", "总结一下这篇文章", "起个网名",
               "想个标语", "列个提纲", "改一下简历", "写个会议纪要", "做一份月报", "整理一个表格",
               "生成一段视频", "做个短视频", "配个音", "生成一段背景音乐", "写个Python脚本", "查一下明天的航班"]),
    ("{w}怎么画", ["猫", "人物", "素描", "水彩", "头像", "手", "眼睛"]),
    ("怎样{w}", ["画好人物的手", "拍出好看的照片", "写负面提示词", "提高画画水平", "学习设计", "配色更高级", "构图"]),
    ("{w}好看吗", ["这张图", "我的头像", "这个logo", "这套配色", "我拍的照片"]),
    ("你觉得{w}怎么样", ["这张图", "这个设计", "我画的画", "这个配色"]),
    ("{w}需要多大显存", ["Stable Diffusion", "训练LoRA", "跑这个模型", "Flux"]),
    ("推荐{w}", ["几本小说", "一本书", "几个配色方案", "几个设计网站", "一些好听的歌", "几个壁纸网站", "好用的修图软件"]),
    ("{w}多少钱", ["做一张海报", "请设计师", "一张壁纸", "定制头像"]),
    ("这张图是{w}", ["谁画的", "什么风格", "AI生成的吗", "怎么做出来的"]),
    ("我想学{w}", ["摄影", "PS", "设计", "AI绘画", "插画"]),
    ("{w}", ["帮我剪一段旅行vlog", "写一首儿歌的歌词", "这句英文什么意思", "生成一份会议纪要", "帮我生成一个二维码链接",
            "给我一个海报的标题", "给这张图起个名字", "帮我写一句宣传语", "写一段元宵节祝福语", "帮我想一个logo的创意",
            "春节发什么祝福语好", "中秋节的由来是什么", "海报一般用什么字体", "壁纸怎么设置", "头像怎么换", "背景音乐推荐一下",
            "帮我做个数据分析", "明天提醒我开会", "帮我订一张去上海的机票", "生成一个随机数", "解释一下这段代码"]),
]


def other():
    s = Sample("other")
    head(s, 0.2)
    if R.random() < 0.25:
        s.add(pick(OTHER_FIXED) + pick(["", "", "？", "~", "！", "呀", "啊"]))
    else:
        template, words = pick(OTHER_TEMPLATES)
        if words is None:
            text = template.format(w=pick(["海报", "图片", "照片", "logo", "壁纸", "头像", "PPT"]),
                                   x=pick(["段描述", "个标题", "段文案", "几句话", "个介绍"]))
        else:
            text = template.format(w=pick(words))
        s.add(text + pick(["", "", "？", "?", "吗", "呢", "。"]) if not text.endswith("吗") else text)
    tail(s, 0.2)
    return s


GENERATORS = {
    "generate.poster": generate_poster,
    "generate.portrait": generate_portrait,
    "generate.background": generate_background,
    "generate.icon": generate_icon,
    "generate.free": generate_free,
    "edit.reference": edit_reference,
    "edit.instruct": edit_instruct,
    "other": other,
}

# ---------------------------------------------------------------- noise and labels


def traditional(s):
    for chunk in s.chunks:
        chunk[0] = "".join(SIMPLIFIED_TO_TRADITIONAL.get(c, c) for c in chunk[0])


def typo(s):
    free = [c for c in s.chunks if c[1] is None and any(ch in TYPOS for ch in c[0])]
    if free:
        chunk = pick(free)
        positions = [i for i, ch in enumerate(chunk[0]) if ch in TYPOS]
        i = pick(positions)
        chunk[0] = chunk[0][:i] + TYPOS[chunk[0][i]] + chunk[0][i + 1:]


def spacing(s):
    for chunk in s.chunks:
        if chunk[1] is None:
            chunk[0] = chunk[0].replace("，", pick(["，", ",", " ", "，"]))


def labels(s):
    """Slots and their intended character offsets."""
    slots, spans, offset = {}, {}, 0
    for text, slot, count in s.chunks:
        if slot:
            if slot in slots:
                return None
            slots[slot] = count if slot == "count" else text
            spans[slot] = (offset, offset + len(text))
        offset += len(text)
    return slots, spans


NUMERAL = set("0123456789零〇一二两三四五六七八九十百０１２３４５６７８９壹贰叁肆伍陆柒捌玖拾")
CLASSIFIERS = set("张張幅个個款份套组版副种")
ORDER = ["subject", "style", "aspect", "count", "target", "content", "region"]


def parse_number(text):
    digits = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
    text = "".join(chr(ord(c) - 0xFEE0) if "０" <= c <= "９" else c for c in text)
    if text.isdigit():
        return int(text)
    total, current = 0, None
    for c in text:
        if c in digits:
            if current is not None:
                return None
            current = digits[c]
        elif c == "十":
            total += (current if current is not None else 1) * 10
            current = None
        elif c == "百":
            if current is None:
                return None
            total += current * 100
            current = None
        else:
            return None
    return total + (current or 0)


def located_like_rust(text, slots):
    """Where crates/agent/src/corpus.rs will put each slot (same rules)."""
    taken = [False] * len(text)
    found = {}
    if "count" in slots:
        candidates, i = [], 0
        while i < len(text):
            if text[i] in NUMERAL:
                start = i
                while i < len(text) and text[i] in NUMERAL:
                    i += 1
                if parse_number(text[start:i]) == slots["count"]:
                    candidates.append((i < len(text) and text[i] in CLASSIFIERS, start, i))
            else:
                i += 1
        pick_ = next((c for c in candidates if c[0]), candidates[0] if candidates else None)
        if pick_ is None:
            return None
        found["count"] = (pick_[1], pick_[2])
        for j in range(pick_[1], pick_[2]):
            taken[j] = True
    names = sorted((n for n in ORDER if n in slots and n != "count"), key=lambda n: -len(slots[n]))
    for name in names:
        value = slots[name]
        for start in range(0, len(text) - len(value) + 1):
            if text.startswith(value, start) and not any(taken[start:start + len(value)]):
                found[name] = (start, start + len(value))
                for j in range(start, start + len(value)):
                    taken[j] = True
                break
        else:
            return None
    return found


def finish(s):
    r = R.random()
    if r < 0.08:
        traditional(s)
    elif r < 0.14:
        typo(s)
    if R.random() < 0.2:
        spacing(s)
    text = s.text().strip()
    # A sample starting or ending with spaces would shift offsets; rebuild instead.
    if text != s.text():
        return None
    result = labels(s)
    if result is None:
        return None
    slots, spans = result
    if any(isinstance(v, str) and (v != v.strip() or not v) for v in slots.values()):
        return None
    if located_like_rust(text, slots) != spans:
        return None
    ordered = {name: slots[name] for name in ORDER if name in slots}
    return {"text": text, "intent": s.intent, "slots": ordered}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-intent", type=int, default=1500)
    args = parser.parse_args()
    R.seed(args.seed)
    seen = set()
    rows = []
    for intent, generator in GENERATORS.items():
        made, attempts = 0, 0
        while made < args.per_intent and attempts < args.per_intent * 50:
            attempts += 1
            row = finish(generator())
            if row is None or row["text"] in seen:
                continue
            seen.add(row["text"])
            rows.append(row)
            made += 1
    R.shuffle(rows)
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
