#!/usr/bin/env python3
"""Generates the labelled training corpus for huatu's intent + slot model.

    python3 data/intents/generate_corpus.py > data/intents/train.jsonl

(defaults: --seed 7 --per-intent 1500 --other-factor 1.6, 12,900 instructions)

Each instruction is assembled from chunks, some of which are slot values, so the labels
are exact by construction. Wording varies on purpose: polite, terse and colloquial
requests, extra chatter, English words (logo, PPT, banner, 16:9), typos, traditional
characters, negations, questions (能不能帮我…？), context clauses and several clauses.
`other` covers talk, questions about huatu, how-to questions, requests for text,
documents, video, translation, code, facts and talk about pictures, many of them with
image words. Pseudo words drawn from the common GB2312 characters stand in slots and
topics so that unfamiliar words are handled by their context. The labels follow
INTENTS.md's span rules.
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
for line in (ROOT / "crates/agent/src/intent/traditional.txt").read_text(encoding="utf-8").splitlines():
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
# Characters that carry the request's structure (verbs, pointers, output kinds, style and
# usage words); everything else in GB2312's 3,755 level-1 characters (the common ones)
# may stand in a pseudo word, so that characters people use but the word lists lack
# still get trained embeddings, in slots of every intent and in `other` topics alike.
CUE_CHARS = set("""画图张幅个只把将换改成变加去掉删除在的了吗呢吧请帮我给你来整做设计生制作弄搞出要想用让
放贴到替用像照片背景壁纸底纹理标志徽海报卡风格效果质感版横竖屏比例尺寸高清张款套份组一二两三四五六七八九十
这那些此其怎么如何样什吗写翻译查算问谁哪几多少能可以会不别没有是和与或及上下左右中间角边顶底里内外前后""")
CHAR_POOL = [c for c in CHAR_POOL if c not in CUE_CHARS]
WIDE_POOL = sorted(c for c in (bytes([hi, lo]).decode("gb2312", "ignore") for hi in range(0xB0, 0xD8)
                              for lo in range(0xA1, 0xFF)) if c and c not in CUE_CHARS)


def pseudo_word():
    """Random characters: teaches the tagger the pattern around a slot, not the words."""
    pool = CHAR_POOL if R.random() < 0.5 else WIDE_POOL
    return "".join(R.choice(pool) for _ in range(R.choice([2, 2, 3, 3, 4, 5])))


def rare_char():
    return R.choice(WIDE_POOL)


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
        self.question = None

    def add(self, text, slot=None, count=None):
        if text:
            self.chunks.append([text, slot, count])
        return self

    def text(self):
        return "".join(c[0] for c in self.chunks)


# ---------------------------------------------------------------- shared pieces

def head(s, p=0.35):
    if R.random() < 0.12:
        s.add(pick(CONTEXT_HEADS))
    if R.random() < p:
        s.add(pick(CHATTER_HEAD))


QUESTION_PREFIXES = {"能不能帮我": ["？", "?", "", "呀？"], "可以帮我": ["吗", "吗？", "吗?", "不"], "能帮我": ["吗", "吗？", "不"],
                     "你能不能": ["？", "", "?"], "能不能给我": ["？", ""], "可不可以帮我": ["？", "", "呀"],
                     "你可以帮我": ["吗", "吗？"], "你能帮我": ["吗", "吗？", "不？"], "能否帮我": ["？", ""],
                     "你能": ["吗", "吗？"], "可以给我": ["吗", "吗？"], "帮我": ["好吗", "好不好", "行不行", "可以吗？"]}


def tail(s, p=0.3):
    ending = getattr(s, "question", None)
    if ending is not None:
        s.add(ending)
        s.question = None
    if R.random() < p:
        s.add(pick(CHATTER_TAIL))


def ask(s, p=0.12):
    """A request worded as a question: 能不能帮我… ？ / 可以帮我…吗 (the ending comes in tail)."""
    if R.random() < p:
        prefix = pick(sorted(QUESTION_PREFIXES))
        s.question = pick(QUESTION_PREFIXES[prefix])
        return prefix
    return None


def request(s, verbs=None, one_p=0.6, classifier="张"):
    """Polite prefix + verb + 一张, all outside slots."""
    polite = pick(["", "", "请", "麻烦", "帮我", "请帮我", "能不能帮我", "可以帮我", "我想", "我想要",
                   "我需要", "给我", "帮忙", "麻烦你", "求", "求一张" if classifier == "张" else "求一个",
                   "我要", "想要", "帮我们", "劳烦", "拜托", "快帮我", "给我们"])
    verb = pick(verbs or ["生成", "画", "做", "来", "整", "设计", "弄", "出", "搞", "制作", "创作", "绘制", "帮我画",
                          "生成一下", "画一下", "做一下", "P", "作"])
    asked = ask(s)
    if asked:
        polite = asked
    elif R.random() < 0.1:
        # colloquial one-piece openers: 整个 / 搞张 / 给我来个
        return s.add(pick(["整个", "搞个", "来个", "弄个", "出个", "整张", "来张", "搞张", "给我整个", "帮我整个", "给我来个",
                           "帮我搞个", "来一个", "整一个", "搞一张", "给整个", "速来一张", "麻溜来个", "帮忙弄个", "随手画个"]))
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
    if allow_keep and not styles and R.random() < 0.06:
        # 商务风格 → 商务 (the bare 风 stays only in 商务风, 科技风 …)
        s.add(pick(["", "要", "用", "做成"])).add(pick(STEM_STYLES), "style").add(pick(["风格", "风格的", "的风格"]))
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


STEM_STYLES = ["商务", "科技", "工业", "中国", "古典中国", "未来科技"]
PLATFORMS = ["Teams", "Skype", "Windows", "Mac", "Android", "Instagram", "YouTube", "Facebook", "Twitter", "TikTok", "Steam",
             "Switch", "Kindle", "Galaxy", "Pixel", "Xbox", "Discord", "Slack", "Notion", "Github", "Keep", "Bilibili"]


def pre_aspect(s, p=0.1):
    """来一张 16:9 的海上日出 / 来张竖版的: the size before the subject, often between spaces."""
    if R.random() < p:
        if R.random() < 0.6:
            s.add(" ").add(pick(RATIOS), "aspect").add(pick([" 的", " 的 ", " ", "的"]))
        else:
            s.add(pick(ORIENTATIONS), "aspect").add(pick(["的", "", " "]))
        return True
    return False


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
    if R.random() < 0.09:
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
            if R.random() < 0.2:
                s.add(pick(["，给", "，送给", "，给我", "，送我", "，是给", "，准备送给"]) + pick(
                    ["妈妈", "爸爸", "老师", "同事", "闺蜜", "女朋友", "男朋友", "宝宝", "奶奶", "爷爷", "老婆", "老公", "客户",
                     "领导", "同学", "朋友", "孩子", "外婆"]) + pick(["的", "", "用的", "看的"]))
            else:
                s.add(pick(QUALITY_TAILS))
        else:
            negation(s)
    tail(s, 0.15)


# ---------------------------------------------------------------- generate.*

SHORT_VERBS = ["画", "画", "画", "画", "来", "来", "生成", "整", "给我画", "帮我画", "要", "出", "画画", "帮忙画", "给我来", "帮我生成", "做", "搞"]


def classifier_for(noun):
    if noun in FREE_ANIMALS:
        return pick(["只", "一只", "只", "一只", "头" if noun in ("大象", "牛", "猪", "狮子", "老虎", "熊猫") else "只",
                     "条" if noun[-1] in "龙鱼蛇狗" else "只", "个"])
    if noun in FREE_FOODS:
        return pick(["碗", "一碗", "盘", "一盘", "份", "一份", "杯", "个", "一个"])
    if noun in PERSON_NOUNS:
        return pick(["个", "一个", "位", "一位", "名", "张", "一张"])
    return pick(["个", "一个", "张", "一张", "幅", "一幅", "座" if noun in FREE_OBJECTS else "个"])


def short_request(intent):
    """The short requests people type most: 画只狗 / 画一只猫 / 做个logo / 来张壁纸 / 元旦海报."""
    s = Sample(intent)
    verb = pick(SHORT_VERBS)
    if intent == "generate.free":
        noun = pick(FREE_ANIMALS + FREE_OBJECTS + FREE_FOODS + FREE_SCENES[:20]) if R.random() < 0.8 else free_subject()
        s.add(verb).add(maybe(0.75, classifier_for(noun))).add(noun, "subject")
    elif intent == "generate.portrait":
        noun = pick(PERSON_NOUNS) if R.random() < 0.6 else person_subject()
        s.add(verb).add(maybe(0.75, classifier_for(noun) if noun in PERSON_NOUNS else pick(["个", "一个", "位", "张"])))
        s.add(noun, "subject").add(maybe(0.3, pick(PORTRAIT_NOUNS)))
    elif intent == "generate.poster":
        s.add(maybe(0.8, pick(["做", "来", "出", "生成", "整", "做个", "搞", "设计", "要"]) + pick(["张", "一张", "个", "一个", "", "份"])))
        if R.random() < 0.85:
            s.add(pick(FESTIVALS) + maybe(0.3, pick(FESTIVE_PURPOSES)) if R.random() < 0.7 else poster_subject(), "subject")
            s.add(maybe(0.2, "的"))
        s.add(pick(["海报", "海报", "贺卡", "宣传图", "祝福图", "banner", "海报图", "宣传海报", "邀请函", "贺图"]))
        fuse_purpose_nouns(s)
    elif intent == "generate.icon":
        s.add(pick(["做", "来", "出", "生成", "画", "设计", "整", "弄", "要", "搞"]) + pick(["个", "一个", "", "款", "一款"]))
        if R.random() < 0.7:
            s.add(pick(ICON_THINGS + ICON_OWNERS) if R.random() < 0.9 else pseudo_word(), "subject").add(maybe(0.2, "的"))
        s.add(pick(["logo", "图标", "LOGO", "icon", "标志", "徽章", "Logo", "app图标", "小图标"]))
    else:
        s.add(maybe(0.8, pick(["来", "做", "生成", "换", "整", "要", "给我", "出"]) + pick(["张", "一张", "个", "", "套"])))
        if R.random() < 0.7:
            s.add(pick(BG_SUBJECTS) if R.random() < 0.9 else pseudo_word(), "subject").add(maybe(0.3, "的"))
        s.add(pick(["壁纸", "背景", "手机壁纸", "背景图", "电脑壁纸", "桌面", "屏保", "底图", "PPT背景", "锁屏"]))
    s.add(maybe(0.25, pick(["吧", "呗", "。", "！", "~", "？", "呀", "一下", "看看"])))
    return s


def poster_subject():
    if R.random() < 0.06:
        return pick(ENGLISH_SUBJECTS)
    if R.random() < 0.05:
        return pseudo_word() + pick(["", "", "促销", "开业", "活动", "祝福", "招聘"])
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
    if R.random() < 0.1:
        return short_request("generate.poster")
    s = Sample("generate.poster")
    head(s)
    subject = poster_subject()
    noun = pick(POSTER_NOUNS)
    form = R.randrange(13)
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
    elif form == 7:
        request(s)
        s.add(subject, "subject").add(noun).add(pick(["，画一个", "，要有", "，上面画", "，配上"])).add(
            pick(PERSON_NOUNS + ["灯笼", "烟花", "月亮", "红包", "福字"]))
    elif form == 8:
        # 妇女节海报，主题是女性力量 → the stated theme is the subject
        request(s)
        s.add(pick(FESTIVALS + ["公司", "学校", "社区"]) + maybe(0.3, pick(FESTIVE_PURPOSES))).add(maybe(0.3, "的")).add(noun)
        s.add(pick(["，主题是", "，主题：", "，主题为", "，以", "，主题定为"]))
        s.add(pick(POSTER_THEMES) if R.random() < 0.7 else pseudo_word(), "subject")
        if s.chunks[-2][0] == "，以":
            s.add("为主题")
    elif form == 9:
        # 请做一张招聘海报，岗位是前端工程师 / 咖啡店周年庆的海报，复古风格
        request(s)
        s.add(pick(["招聘", "招生", "招新", "征稿", "活动通知", "开业", "促销", "募捐", "报名", "比赛"]), "subject")
        remark = pick(["，职位有", "，时间是", "，地点在", "，对象是", "，面向", "，要写上"])
        s.add(noun).add(remark)
        s.add(pick({"，时间是": ["下周六", "本周末", "三月一日", "国庆期间", "每周五晚上"],
                    "，地点在": ["市民广场", "学校礼堂", "一楼大厅", "体育馆", "人民公园"],
                    "，要写上": ["报名电话", "地址", "活动时间", "二维码", "联系方式"]}.get(remark, PERSON_NOUNS + ["大学生", "全体员工", "小朋友"])))
    elif form == 10:
        # 做个国庆节的朋友圈海报 / 来张新春快乐的手机海报: usage words between theme and noun
        request(s)
        s.add(subject, "subject").add(maybe(0.5, "的")).add(pick(["朋友圈", "手机", "电商", "公众号", "门店", "电梯", "微博",
                                                               "抖音", "小红书", "店铺", "线上"] + [p + " " for p in PLATFORMS[:8]]))
        s.add(pick(["海报", "海报图", "宣传图", "封面", "长图", "图"]))
    elif form == 12:
        # the product or shop named before the verb is the subject; the purpose words after it are not
        s.add(pick(["给", "帮", "为", "替"])).add(maybe(0.3, pick(["我们", "我家", "我们家", "我的"])))
        s.add(pick(PRODUCTS + BUSINESSES) if R.random() < 0.9 else pseudo_word(), "subject")
        s.add(pick(["做个", "做一张", "设计个", "出一张", "弄个", "整个", "做张", "出个", "设计一张", "来张"]))
        s.add(pick(["上市宣传图", "促销海报", "宣传海报", "开业海报", "新品海报", "推广图", "宣传单", "活动海报", "促销图",
                    "主图", "上新海报", "广告图", "海报", "宣传图", "banner"]))
    else:
        # 新店开张，做张开业大吉的图 / 公司年会要用，做个年会邀请函
        s.add(pick(["店里要搞活动，", "年底要用，", "下周有活动，", "店庆要用，", "学校要办活动，", "过节了，", "快到节日了，",
                    "客户要的，", "帮个忙，", "活动要用，"]))
        request(s, ["做", "出", "来", "整", "生成", "设计", "搞"])
        s.add(subject, "subject").add(maybe(0.6, "的")).add(pick(["图", "海报", "图片", "邀请函", "宣传图", "贺卡", "卡片"]))
    fuse_purpose_nouns(s)
    extras(s, "poster", has_count=not any(c[1] == "count" for c in s.chunks))
    return s


def person_noun():
    r = R.random()
    if r < 0.06:
        # an unfamiliar first part (维京战士, 苗疆少女): rare characters before a person word
        return rare_char() + maybe(0.6, rare_char()) + pick(["战士", "少女", "姑娘", "少年", "女孩", "男孩", "老人", "武士",
                                                             "先生", "女士", "公主", "骑士", "工人", "师傅", "大叔", "族人",
                                                             "英雄", "勇士", "大侠", "女侠", "王子", "小孩", "宝宝", "阿姨", "爷爷",
                                                             "奶奶", "学生", "老师", "医生", "歌手", "选手", "队员", "女人", "男人"])
    if r < 0.09:
        return pseudo_word() + pick(["人", "者", "师", "女", "男", "手"])
    return pick(PERSON_NOUNS)


def person_action():
    return pick(PERSON_ACTIONS) if R.random() < 0.7 else pick(["正在", "在", ""]) + pick(PERSON_ACTIONS).removeprefix("在")


def person_subject():
    kind = R.randrange(7)
    if kind == 0:
        return pick(PERSON_MODIFIERS) + person_noun()
    if kind == 1:
        return person_noun() + person_action()
    if kind == 2:
        return person_noun()
    if kind == 3:
        # 正在演讲的女企业家 / 在樱花树下牵手的情侣
        return pick(["正在", "在", ""]) + pick(PERSON_ACTIONS).removeprefix("在") + "的" + person_noun()
    if kind == 4:
        # numbers that are part of the picture stay in the subject (两个在公园下棋的老人)
        return pick(PERSON_GROUPS) + maybe(0.6, pick(PERSON_MODIFIERS)) + person_noun()
    if kind == 5:
        return pick(PERSON_MODIFIERS) + person_noun() + pick(PERSON_ACTIONS)
    return pick(PERSON_MODIFIERS) + pick(["", "年轻", "年迈的", "胖胖的", "高个子"]) + person_noun()


# Output kinds that are also styles: 扎马尾的女生插画 → style 插画
KIND_STYLES = ["插画", "油画", "素描", "漫画", "线稿", "简笔画", "剪纸", "版画", "速写"]
PORTRAIT_ONLY_STYLES = ["写真", "杂志封面", "电影海报", "胶片人像", "时尚大片", "棚拍"]


def generate_portrait():
    if R.random() < 0.1:
        return short_request("generate.portrait")
    s = Sample("generate.portrait")
    head(s)
    subject = person_subject()
    noun = maybe(0.4, pick(PORTRAIT_NOUNS))
    form = R.randrange(9)
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
    elif form == 5:
        opener = pick(["我想要一个", "帮我画一位", "请画一位", "生成一位", "画一名", "来一位", "画一对", "来一对", "生成一对",
                       "帮我画一对", "画一个"])
        # A collective 一对 stays in the subject (INTENTS.md); a singular 一+classifier does not.
        if opener.endswith("一对"):
            s.add(opener[:-2]).add("一对" + subject, "subject")
        else:
            s.add(opener).add(subject, "subject")
    elif form == 6:
        # 扎马尾的女生插画 / 古装美女，工笔画
        request(s, ["画", "生成", "来", "整", "出", "画个", "做"], classifier="张")
        s.add(subject, "subject")
        s.add(pick(["", "的", "，", " "])).add(pick(KIND_STYLES), "style")
    elif form == 7:
        # 生成一张 LinkedIn 头像，职业女性，微笑 / 证件照风格的男士头像
        request(s, ["生成", "做", "来", "出", "拍", "画"], classifier="张")
        if R.random() < 0.5:
            s.add(pick(["脉脉", "领英", "微信", "QQ", "简历用的", "求职用的", "钉钉", "公司官网用的", "工牌用的", "社交账号"] +
                       [" " + p + " " for p in PLATFORMS]))
            s.add(pick([" ", "", "的"])).add(pick(["头像", "形象照", "职业照", "证件照", "照片"]))
            s.add(pick(["，", "，人物是", "，要", "：", " "])).add(subject, "subject")
        else:
            s.add(pick(PORTRAIT_ONLY_STYLES), "style").add(pick(["风格的", "风的", "风格"])).add(subject, "subject")
            s.add(pick(["头像", "照片", "照", "", "形象照"]))
    else:
        # 画两个在公园下棋的老人 / 画个厨师在做拉面: the whole clause is the subject
        request(s, ["画", "画个", "生成", "来", "整", "画一下"], one_p=0.3, classifier="个")
        s.add(pick(PERSON_GROUPS) + maybe(0.5, pick(PERSON_MODIFIERS)) + person_noun() if R.random() < 0.4
              else person_noun() + person_action(), "subject")
    extras(s, "portrait", has_count=not any(c[1] == "count" for c in s.chunks),
           has_style=not any(c[1] == "style" for c in s.chunks))
    return s


def generate_background():
    if R.random() < 0.1:
        return short_request("generate.background")
    s = Sample("generate.background")
    head(s)
    usage = pick(BG_USAGES)
    subject = any_noun(BG_SUBJECTS, 0.15, 0.1) if R.random() < 0.85 else None
    form = R.randrange(9)
    if form == 0:
        request(s)
        if subject:
            if not pre_aspect(s):
                s.add(maybe(0.2, pick(MOODS)))
            s.add(subject, "subject").add(maybe(0.4, "的"))
        s.add(usage)
    elif form == 1:
        s.add(usage).add(pick(["，", "：", " ", "，要", "，内容是", "，画", "，主题", "，要有", "，", "，图案是", "，来点"]))
        if subject and R.random() < 0.2:
            s.add(pick(STYLES), "style").add(pick(["", "风", "风格的", "的"]))
        elif subject and R.random() < 0.2:
            one = pick(["一只", "一片", "一座", "一个", "一群", "一棵", "一轮"])
            if one == "一群":
                subject = one + subject
            else:
                s.add(one)
        s.add(subject or pick(["", "好看点"]), "subject" if subject else None)
    elif form == 2:
        request(s)
        s.add(pick(["", "晚会用的", "年会用的", "开会用的", "直播用的", "课件用的", "PPT用的", "手机用的", "电脑用的"] +
                   BG_USAGE_CLAUSES))
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
    elif form == 6:
        s.add(pick(["来", "整", "要", "求"]) + pick(["一张", "张", "几张"]))
        if subject:
            s.add(subject, "subject").add(pick(["的", ""]))
        s.add(usage)
    elif form == 7:
        # 做一个英语课件的背景，卡通风 / 帮我弄个手游直播的背景: a usage, no subject
        request(s)
        s.add(pick(BG_USAGE_CLAUSES)).add(pick(["背景", "背景图", "底图", "背景板", "壁纸", "虚拟背景"]))
        if R.random() < 0.35:
            s.add(pick(["，", "，要", "，主题是", "，画"])).add(subject or pseudo_word(), "subject")
    elif form == 8:
        # 来个 Teams 背景，现代办公室 / 做4张Android壁纸，极光: a platform name is a usage word
        if R.random() < 0.3:
            s.add(pick(["做", "来", "生成", "给我"]))
            n = pick([2, 3, 4, 5, 6])
            s.add(numeral(n), "count", n).add(pick(["张", "幅", "款"]))
        else:
            request(s)
        s.add(pick(["", " "])).add(pick(PLATFORMS)).add(pick(["", " "])).add(pick(["背景", "壁纸", "虚拟背景", "桌面", "锁屏", "主题背景"]))
        if subject:
            s.add(pick(["，", "，要", "：", " "])).add(maybe(0.2, pick(["一只", "一片", "一座", "一个"]))).add(subject, "subject")
    extras(s, "background", has_count=not any(c[1] == "count" for c in s.chunks),
           has_aspect=not any(c[1] == "aspect" for c in s.chunks))
    return s


def generate_icon():
    if R.random() < 0.1:
        return short_request("generate.icon")
    s = Sample("generate.icon")
    head(s)
    owner = R.random() < 0.5
    subject = pick(ICON_OWNERS) if owner else any_noun(ICON_THINGS, 0.2, 0.1)
    if R.random() < 0.08:
        subject = "字母" + pick("ABCDEFGHKLMNPRSTWXYZ")
    noun = pick(ICON_NOUNS)
    form = R.randrange(9)
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
    elif form == 6:
        badge_owner = pick(["篮球队", "足球队", "三年二班", "高一三班", "初二一班", "学校", "实验小学", "社团", "运动会",
                            "车队", "合唱团", "公司", "动漫社", "登山队", "排球队", "乒乓球队", "足球俱乐部", "校足球队",
                            "马拉松", "读书会", "学生会", "研讨会", "艺术节", "科技节", "冬令营", "夏令营", "中学", "大学"])
        if R.random() < 0.1:
            badge_owner = pseudo_word() + pick(["队", "会", "社", "班", "校", "俱乐部"])
        if R.random() < 0.7:
            request(s, ["设计", "做", "画", "出", "弄", "整"], classifier="个")
        s.add(badge_owner, "subject").add(maybe(0.3, "的")).add(pick(ICON_BADGE_NOUNS * 3 + ["徽章", "logo", "标志"]))
        s.add(maybe(0.3, pick(["，要有", "，加上", "，带点", "，用"]) + pick(ICON_THINGS + FREE_ANIMALS) + pick(["元素", "图案", "", "的形象"])))
    elif form == 7:
        # 帮我设计一个公众号头像logo，主题是读书: the stated theme is the subject
        request(s, ["设计", "做", "画", "出", "弄"], classifier="个")
        s.add(pick(["公众号", "小程序", "App", "网站", "店铺", "团队", "个人", "抖音号", "视频号", "博客", "工作室", "品牌", ""]))
        s.add(pick(["头像", "", ""])).add(pick(ICON_NOUNS))
        s.add(pick(["，主题是", "，主题：", "，图案是", "，内容是", "，画个", "，要一个"]))
        s.add(any_noun(ICON_THINGS + ["阅读", "旅行", "美食", "健身", "音乐", "摄影", "编程", "绿植", "宠物", "咖啡"], 0.2, 0.12), "subject")
    else:
        # 画一个闪电形状的图标 / 做一个搜索按钮的图标
        request(s, ["设计", "做", "画", "生成", "来", "出"], classifier="个")
        s.add(pick(ICON_THINGS) + pick(["形状", "按钮", "造型", "图案", ""]) if R.random() < 0.6 else pseudo_word(), "subject")
        s.add(pick(["的", "", "的小"])).add(pick(ICON_NOUNS))
    extras(s, "icon", has_aspect=R.random() < 0.3,
           has_count=not any(c[1] == "count" for c in s.chunks),
           has_style=not any(c[1] == "style" for c in s.chunks))
    return s


def free_subject():
    if R.random() < 0.08:
        return pseudo_word()
    kind = R.randrange(9)
    if kind == 7:
        # 书架上的猫 / 玻璃罐里的萤火虫 / 樱花树下的小鹿: a place before the thing
        place = pick(FREE_OBJECTS + FREE_SCENES[:30] + ["书架", "窗台", "月球", "云端", "雪山", "湖面", "花丛", "玻璃罐", "茶杯", "手掌",
                                                        "屋顶", "树梢", "井底", "沙滩"])
        return maybe(0.3, "在") + place + pick(["上的", "里的", "下的", "中的", "旁的", "边的", "顶上的"]) + pick(
            FREE_ANIMALS + FREE_OBJECTS + FREE_FOODS)
    if kind == 8:
        # 外星飞船降落在草原上 / 机器人在厨房做饭: something that is not a person doing something
        agent = maybe(0.3, pick(FREE_OBJECT_MODIFIERS)) + pick(FREE_ANIMALS + ["机器人", "飞船", "外星飞船", "火车", "帆船", "热气球",
                                                                          "风筝", "纸飞机", "月亮", "机甲", "无人机", "雪人"])
        return agent + pick(["降落在", "飞过", "穿过", "停在", "漂在", "躺在", "坐在", "掉进", "藏在", "矗立在", "在"]) + pick(
            ["草原上", "长江边", "城市上空", "沙漠里", "古镇里", "雪地上", "海面上", "山顶", "厨房里", "屋顶上", "银河里", "森林里"]) + pick(
            ["", "", "做饭", "看书", "发光", "唱歌", "跳舞", "休息", "下棋"])
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
    if kind == 6 and R.random() < 0.5:
        # 红色跑车在沙漠公路上行驶 / 机器人在花园浇水
        return maybe(0.4, pick(FREE_OBJECT_MODIFIERS)) + pick(FREE_OBJECTS + FREE_ANIMALS) + pick(["在", "正在", ""]) + pick(
            ["山间公路上", "草坪上", "雨中", "雪地里", "海面上", "天空中", "街道上", "废墟中", "山谷里", "湖边", "麦田里",
             "桌子上", "窗台上", "夜空下", "霓虹灯下", "月光下"]) + pick(["行驶", "飞翔", "奔跑", "漂浮", "睡觉", "发光", "游泳",
                                                                  "降落", "散步", "跳舞", "燃烧", "盛开", ""])
    if kind == 6:
        return pick(FREE_OBJECTS + FREE_ANIMALS + FREE_SCENES) if R.random() < 0.7 else pseudo_word() + pick(
            ["", "", "树", "花", "鸟", "鱼", "兽", "塔", "山", "城", "湖"])
    return pick(FREE_OBJECTS + FREE_ANIMALS) + pick(["在", "漂浮在", "停在", "倒映在"]) + pick(
        ["月球上", "海面上", "云端", "沙漠里", "雪山顶上", "城市上空", "森林深处", "外太空"])


def generate_free():
    if R.random() < 0.1:
        return short_request("generate.free")
    s = Sample("generate.free")
    head(s)
    subject = free_subject()
    numbered = subject[:2] in ("两只", "三只", "五只")
    form = R.randrange(9)
    # 一对 is collective and would belong to the subject; the singular ones are dropped.
    one = pick([c for c in FREE_CLASSIFIERS if c != "一对"] + [""])
    if form == 0:
        request(s, ["画", "生成", "来", "画个", "帮我画", "创作", "绘制", "整", "给我画"], one_p=0.0)
        s.add(one if not numbered else "")
        if not pre_aspect(s):
            s.add(maybe(0.2, pick(MOODS)))
        s.add(subject, "subject")
        s.add(maybe(0.3, pick(["的图", "的图片", "的画", "的照片", "的画面", "的场景", "图", "的样子"])))
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
    elif form == 5:
        request(s, ["画", "生成", "来", "画个"], one_p=0.0)
        s.add(one if not numbered else "").add(subject, "subject").add(pick(["，用", "，要", "，做成", "，", "，", " "]))
        s.add(pick(STYLES), "style").add(pick(["风格", "的风格", "", "画风", "", "风"]))
    elif form == 6:
        # 一台复古相机特写 / 画一盘红烧肉，俯拍: classifier, subject, camera word
        s.add(pick(["", "", "画", "来", "生成", "拍", "给我"])).add(one if not numbered else "")
        camera = pick(CAMERA_TAILS)
        s.add(subject, "subject").add(pick(["", "，", " "] + ([] if camera.startswith("的") else ["的"]))).add(camera)
    elif form == 7:
        # 画一杯拿铁咖啡，拉花是心形: a remark after the subject is not part of it
        request(s, ["画", "生成", "来", "画个", "整", "做"], one_p=0.0)
        s.add(one if not numbered else "").add(subject, "subject")
        s.add(pick(["，背景是", "，旁边有", "，上面有", "，周围是", "，天空是", "，颜色是", "，要有", "，远处有", "，表面有"]))
        s.add(pick(BG_SUBJECTS + FREE_OBJECTS + ["心形", "紫色的", "晚霞", "彩虹", "一群鸟", "星星", "落叶"]))
    else:
        # 画条龙，中国风 / 帮我画一个苹果，素描 / 来4张不同角度的机械表
        verbs = ["画", "生成", "来", "帮我画", "给我画", "整", "出", "画个", "要"]
        if R.random() < 0.35 and not numbered:
            s.add(pick(verbs))
            n = pick([2, 3, 4, 5, 6, 8, 10])
            s.add(numeral(n), "count", n).add(pick(["张", "幅", "个", "只"]))
        else:
            request(s, verbs, one_p=0.0)
            s.add(one if not numbered else "")
        s.add(subject, "subject")
        if R.random() < 0.6:
            style = pick(STYLES + KEEP_FENG)
            s.add(pick(["，", "，", "，用", " "])).add(style, "style").add("" if style.endswith("风") else pick(["", "", "风", "风格"]))
    extras(s, "free", has_count=not numbered and not any(c[1] == "count" for c in s.chunks),
           has_style=not any(c[1] == "style" for c in s.chunks), has_aspect=not any(c[1] == "aspect" for c in s.chunks))
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

EI_TARGETS = sorted(set(EI_TARGETS + EI_TARGETS_MORE))
EI_CONTENTS = sorted(set(EI_CONTENTS + EI_CONTENTS_MORE))
THING_PLACES = """桌上的 墙上的 地上的 窗外的 左边的 右边的 远处的 天上的 她手里的 他头上的 门口的 背景里的 角落里的 床上的
沙发上的 盘子里的 杯子里的 河里的 树上的 路边的 前面的 后面的 中间的 最左边的 照片左边的""".split()


def ei_target(extra=()):
    """A thing in the original image; sometimes with a modifier saying which (桌上的咖啡杯)."""
    if R.random() < 0.22:
        return pick(THING_PLACES) + pick([t for t in EI_TARGETS if "的" not in t] + list(extra))
    return any_noun(EI_TARGETS + list(extra))


POSITIONS = """右下角 左上角 右上角 左下角 底部 顶部 中间 左边 右边 正中间 角落 上方 下方""".split()

IMAGE_REFS = ["图里的", "图中的", "图片里的", "图片中的", "照片里的", "照片中的", "原图的", "原图里的", "画面里的",
              "画面中的", "这张图的", "这张照片里的", "图上的", "照片上的", ""]

QUOTES = ["“{}”", "「{}」", "\"{}\"", "'{}'", "：{}"]
QUOTED_TEXTS = """新年快乐 生日快乐 欢迎光临 新品上市 限时特惠 恭喜发财 Happy Birthday 开业大吉 谢谢惠顾
毕业快乐 我爱你 加油 2025 Merry Christmas 中秋快乐 SALE 早安 元旦快乐 新春大吉""".split()


def edit_instruct():
    s = Sample("edit.instruct")
    head(s, 0.25)
    form = R.randrange(15)
    ref = pick(IMAGE_REFS) if R.random() < 0.5 else ""
    pointer = maybe(0.15, pick(["这个", "那个", "这只", "那只", "这些", "那棵"]))
    if form == 0:
        opener = pick(["把", "将", "帮我把", "请把", "麻烦把", "能不能把", "", "可以把", "能把", "能帮我把", "给我把", "你帮我把"])
        if opener in ("能不能把", "可以把", "能把", "能帮我把"):
            s.question = pick(["吗", "吗？", "？", ""] if opener != "能不能把" else ["？", "", "?"])
        s.add(opener).add(ref).add(pointer)
        s.add(ei_target(), "target").add(pick(["换成", "改成", "变成", "替换成", "改为", "换为", "P成", "弄成", "调成"]))
        s.add(maybe(0.2, pick(["一片", "一个", "一只"]))).add(any_noun(EI_CONTENTS), "content").add(maybe(0.2, "的"))
    elif form == 1:
        s.add(pick(["让", "给", "帮", "请让"])).add(ref).add(pick(["他", "她", "女孩", "男孩", "小狗", "猫咪", "模特", "老人", "人物", "宝宝"]), "target")
        s.add(pick(["戴上", "穿上", "拿着", "加上", "戴一副", "戴一顶", "换上", "加一顶", "加一副", "配上"]))
        s.add(maybe(0.35, pick(["红色", "蓝色", "白色", "黑色", "粉色", "金色", "格子", "碎花", "条纹", "毛绒", "复古", "可爱的", "大大的"])) +
              pick(["墨镜", "帽子", "圣诞帽", "口罩", "眼镜", "皇冠", "围巾", "西装", "连衣裙", "汉服", "耳环", "项链", "花环", "领结",
                    "外套", "毛衣", "裙子", "T恤", "衬衫", "礼服", "手套", "靴子", "发卡", "蝴蝶结", "披风", "雨衣"]), "content")
    elif form == 2:
        s.add(pick(["在", "帮我在", "请在", "往"])).add(pick(["图片", "画面", "照片", ""])).add(pick(POSITIONS), "target")
        s.add(pick(["加", "加个", "加一个", "添加", "放", "放一个", "画一个", "加上", "写上", "加一轮", "加一朵", "补一个"]))
        s.add(any_noun(["签名", "月亮", "太阳", "水印", "日期", "logo文字", "小鸟", "彩虹", "云朵", "花", "星星", "二维码框", "气球"]), "content")
    elif form == 3:
        s.add(pick(["在", "往", "给"])).add(pick(["天空", "桌子", "墙", "草地", "湖面", "她手", "树", "窗台", "沙发"]), "target")
        s.add(pick(["上", "里", "中", ""])).add(pick(["加", "添", "加", "放", "添加", "P上", "补", "画"]) + pick(["一群", "一只", "一束", "几朵", "一个", "一盆", ""]))
        s.add(any_noun(["飞鸟", "花", "小猫", "热气球", "蝴蝶", "灯笼", "月亮", "彩虹", "植物"]), "content")
    elif form == 4:
        opener = pick(["去掉", "删除", "删掉", "抹掉", "移除", "P掉", "擦掉", "帮我去掉", "请去除", "把", "帮我把", "请把", "能不能把"])
        s.add(opener).add(ref).add(pointer)
        s.add(ei_target(["路人", "水印", "电线", "垃圾桶", "文字", "杂物", "痘痘", "皱纹", "烟头", "电线杆", "游客", "黑眼圈"]), "target")
        if opener.endswith("把"):
            s.add(pick(["去掉", "删掉", "P掉", "抹掉", "移除", "去了", "删了", "弄掉", "擦掉", "给去掉"]))
            if opener == "能不能把":
                s.question = pick(["？", "", "吗"])
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
    elif form == 9:
        s.add(pick(["把", "将", "帮我把"])).add(ref).add(pick(EI_TARGETS), "target").add(pick(["染成", "刷成", "涂成", "调成"]))
        s.add(pick(["红色", "蓝色", "金色", "浅绿色", "粉色", "紫色", "黑色", "银色", "暖黄色"]), "content")
    elif form == 10:
        # 把老照片修复一下，变清晰: the image itself is no target
        s.add(pick(["把", "将", "帮我把", "请把", "麻烦把", "能不能把", "帮忙把"]))
        s.add(pick(["这张图", "照片", "旧照片", "图片", "这张照片", "原图", "画面", "这张自拍", "这张旧照", "整张图", "这张截图"]))
        s.add(pick(EI_ENHANCE))
    elif form == 11:
        # 给照片加一个暖色调滤镜
        s.add(pick(["给照片加", "给图片加", "给这张图加", "加", "帮我加", "给画面加上", "添加", "整体加"]))
        s.add(pick(["一个", "个", "一层", "点", ""])).add(pick(EI_FILTER_CONTENTS), "content")
    elif form == 12:
        # 在图片底部加一行字：欢迎光临
        s.add(pick(["在", "帮我在", "请在", "麻烦在"])).add(pick(["图片", "画面", "照片", "海报", ""])).add(pick(POSITIONS), "target")
        s.add(pick(["加一行字", "写上", "加上文字", "加一句", "写一行", "添加文字", "打上"]))
        s.add(pick(QUOTES).format("\x00"))
        before, after = s.chunks.pop()[0].split("\x00")
        s.add(before).add(pick(QUOTED_TEXTS), "content").add(after)
    elif form == 13:
        # 让这只狗变成一只猫
        s.add(pick(["让", "把", "将"])).add(ref).add(pointer or pick(["这只", "那只", "这个", ""]))
        s.add(any_noun(["狗", "猫", "小狗", "他", "她", "男孩", "女孩", "汽车", "房子", "树", "鸟", "马", "人物"]), "target")
        s.add(pick(["变成", "变为", "化身", "变身成"])).add(pick(["一只", "一个", "一位", ""]))
        s.add(any_noun(EI_CONTENTS), "content")
    else:
        # 人物换成侧脸 / 背景换成纯白色: no verb before the target
        s.add(ref).add(ei_target(), "target").add(pick(["换成", "改成", "变成", "改为", "要换成", "帮我换成", "弄成"]))
        s.add(any_noun(EI_CONTENTS), "content")
    if R.random() < 0.15 and not any(c[1] == "style" for c in s.chunks):
        s.add(pick(["，整体", "，再", "，顺便", "，然后"])).add(pick(["改成", "变成", "转成"])).add(pick(STYLES), "style").add(pick(["风格", "画风", ""]))
    tail(s)
    return s


ER_SOURCES = ["这个", "这张", "这枚", "这件", "这只", "这顶", "附件里的", "附件中的", "附件的", "我上传的", "我发的",
              "我刚发的", "我刚上传的", "图2的", "图二的", "第二张图的", "第二张图里的", "另一张图里的", "参考图里的",
              "下面这张", "我给你的", "我发你的这张", "这张图里的"]
ER_ELEMENTS = """logo 二维码 水印 签名 印章 贴纸 商标 徽章 头像 产品 猫 狗 人物 帽子 衣服 外套 裙子 沙发 花束
图案 花纹 人脸 汽车 公司logo 品牌logo 校徽 吉祥物 文字 LOGO 标志 台灯 杯子 包包 鞋子 手表 月亮 照片""".split()
# Elements only the user can supply, as (owner, element): the owner is a source like 我上传的
# and stays out of the content (data/intents/README.md: 我们店的招牌 → 招牌).
ER_USER_ELEMENTS = [("我们店的", "招牌"), ("我们公司的", "logo"), ("本单位的", "徽标"), ("我们学校的", "校徽"),
                    ("我们品牌的", "标志"), ("本公司的", "商标"), ("我的", "签名"), ("我们的", "吉祥物")]
ER_TARGETS = """沙发 杯子 桌子 墙 墙上的画 草地 马路 T恤 模特 女孩 小狗 他身上的T恤 桌上的花瓶 客厅里的旧沙发
门头 证件照模板 笔记本电脑 搜索框 天空 人 招牌 屏幕 车身 背景板 相框 盒子 包装盒""".split()


def edit_reference():
    s = Sample("edit.reference")
    head(s, 0.25)
    source = pick(ER_SOURCES)
    element = any_noun(ER_ELEMENTS, 0.3, 0.1)
    owned = R.random() < 0.1
    if owned:
        source, element = pick(ER_USER_ELEMENTS)
    img = maybe(0.2, pick(["图", "图片", "照片"])) if source and not owned else ""
    form = R.randrange(8)
    if form == 0:
        s.add(pick(["把", "将", "帮我把", "请把", "麻烦把", "能不能把", "可以把"])).add(source).add(element, "content").add(img)
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
    elif form == 7:
        # 把这件裙子换到模特身上 (target 模特) / 把图二的帽子戴到女孩头上 (target 女孩头)
        person = pick(["模特", "女孩", "男孩", "人", "他", "她", "小狗", "猫", "宝宝", "新娘", "老人", "人物", "那个人", "这个人"])
        s.add(pick(["把", "将", "帮我把", "请把"])).add(source or "这件").add(element, "content").add(img)
        s.add(pick(["换到", "戴到", "穿到", "放到", "P到", "加到", "移到"])).add(maybe(0.4, pick(["原图", "图里", "图1", "原图的", "图里的", "第一张图的"])))
        body = pick(["身上", "身上", "头上", "手上", "脸上"])
        if body == "身上":
            s.add(person.removeprefix("那个").removeprefix("这个"), "target").add("身上")
            if person.startswith(("那个", "这个")):
                s.chunks.insert(len(s.chunks) - 2, [person[:2], None, None])
        else:
            s.add(person.removeprefix("那个").removeprefix("这个") + body[0], "target").add("上")
    else:
        s.add(pick(["参考", "按照", "照着"])).add(source or "附件").add(pick(["", "图", "图片"]))
        s.add(pick(["，把", "，将"])).add(maybe(0.4, pick(["原图", "图片"]))).add(pick(REGIONS), "region").add("的")
        s.add(any_noun(ER_TARGETS, 0.3, 0.1), "target").add(pick(["换掉", "替换掉", "换成它", "换成一样的"]))
    tail(s)
    return s


# ---------------------------------------------------------------- other
# Everything that is not a request to create or edit a picture. Many of these share
# words with image requests on purpose (海报, logo, 壁纸, PPT, 做/生成/画, 把…改成…,
# 主题是…), so that what decides is what is asked for: text, a document, a video, an
# answer, a how-to, or talk.

GREETINGS = """您好 你好呀 您好呀 你们好 嗨 哈喽 hello hi hey 早 早安 上午好 中午好 下午好 晚上好 晚安 大家好
在吗 在不在 有人吗 拜拜 回见 下次见 明天见 先这样吧 先不聊了 我走了 好的 好 好嘞 嗯 哦 哦哦
OK ok 收到 明白 懂了 知道了 没问题 可以 行 对 对的 不对 是的 不是 好吧 随便 都行 嗯好的 了解""".split()
GREETING_ENDS = ["", "", "呀", "啊", "！", "~", "哦", "？", "。", "！！", "呀～", "哈", "😊"]

TALK = """谢谢 谢谢啦 太感谢了 多谢 感谢 辛苦了 辛苦啦 你真棒 你太厉害了 画得不错 太好看了 我很喜欢 很满意
不错不错 不好看 太丑了 这不是我想要的 你怎么这么慢 又出错了 生成失败了 为什么报错了 这个不行 算了
不要了 取消吧 取消 不用了 没事了 等一下 稍等 我再想想 让我想想 你听不懂吗 你怎么听不懂 我不想画了
今天好累 我好无聊 我心情不好 我失恋了 好开心 我今天生日 陪我聊聊天 陪我说说话 你吃饭了吗 你睡了吗
你喜欢什么颜色 你喜欢猫还是狗 你有朋友吗 你开心吗 你会累吗 我们聊点别的吧 换个话题 说点好玩的""".split()

ABOUT_ME = """你叫什么名字 你是哪位 你都会些什么 你会什么 你画画厉害吗 你是AI吗 你是机器人吗
你是真人吗 你用的什么模型 你是怎么画图的 你是怎么生成图片的 你支持哪些风格 你能生成多大的图 生成一张图要多久
你能画视频吗 你收费吗 你是免费的吗 你能记住我吗 你和Midjourney比怎么样 谁开发的你 你的原理是什么
你能联网吗 你几岁了 你有什么功能 你能听懂英文吗 你会说英语吗 你是ChatGPT吗 你背后是什么模型 你能改图吗
你可以做什么 你有哪些本事 介绍一下你自己 你的名字是什么 怎么使用你 你怎么用 使用说明 帮助 help""".split()

HOWTO_PREFIXES = ["怎么", "如何", "怎样", "教我", "请问怎么", "我想知道怎么", "有没有办法", "能教我怎么", "求教程：",
                  "新手怎么", "有什么方法可以", "请教一下怎么", "谁知道怎么", "我该怎么", "应该怎么", "到底怎么"]
HOWTO_TASKS = """用PS修图 用PS给人像磨皮 把图片压缩得小一点 调色 做海报 设计logo 画好人物 画手 拍出好看的照片 修图 去水印
换背景 把背景换成白色 把照片变清晰 把图片转成PDF 把图片放大不模糊 做一个好看的PPT 配色 选字体 写提示词 用Midjourney
训练LoRA 安装Stable Diffusion 用ComfyUI 给照片调色 画出透视感 学素描 把图片背景变透明 批量改图片尺寸 给图片加水印
用美图秀秀抠图 用手机修图 拍星空 拍人像 用剪映剪视频 做表格 用Excel做图表 做PPT动画 写简历 提高画画水平
画好看的头像 设计一张好看的海报 做出好看的壁纸 把壁纸设置到手机上 换微信头像 做一个logo 用AI画画 写好一段提示词
把照片打印出来 把图片发到电脑上 保存图片 下载这张图 把两张图拼在一起 把视频转成GIF 画水彩 调出胶片感 把图片转成矢量图
用Illustrator画图标 用Figma做界面 用Canva做海报 把图片里的文字提取出来 识别图片里的文字 找到高清壁纸""".split()
HOWTO_ENDS = ["", "", "？", "?", "呢", "啊", "比较好", "最快", "最简单", "有什么技巧", "，求教", "，有教程吗"]

TEXT_VERBS = ["写", "帮我写", "给我写", "帮忙写", "请写", "来", "整", "帮我想", "想", "编", "帮我编", "生成", "帮我生成",
              "做", "帮我做", "出", "起草", "拟", "帮我拟", "给我来", "麻烦写", "写一下", "帮我起草", "能不能帮我写", "可以帮我写"]
TEXT_QTY = ["一首", "一篇", "一段", "一封", "一句", "一份", "个", "首", "篇", "段", "封", "句", "份", "几句", "几条", "", "一个", "三条"]
TEXT_KINDS = """诗 现代诗 古诗 七言绝句 五言诗 藏头诗 打油诗 作文 文章 情书 周报 日报 月报 年终总结 述职报告 工作总结 演讲稿
主持稿 发言稿 自我介绍 邮件 辞职信 请假条 道歉信 感谢信 推荐信 求职信 简历 文案 海报文案 朋友圈文案 广告语 标语 口号
slogan 宣传语 祝福语 拜年短信 生日祝福 歌词 故事 童话 小说 剧本 段子 笑话 绕口令 谜语 对联 春联 新闻稿 产品介绍 商品描述
小红书笔记 公众号推文 会议纪要 大纲 提纲 PPT大纲 论文摘要 读后感 观后感 教案 试卷 合同 菜谱 旅行攻略 健身计划 学习计划
口播稿 视频脚本 分镜脚本 开场白 结束语 颁奖词 串词 贺词 悼词 检讨书 申请书 倡议书 通知 公告 活动方案 策划案 标题
logo创意说明 海报标题 壁纸文案 头像签名 个性签名 朋友圈配文 图片描述 提示词 英文提示词 prompt""".split()

TOPIC_WORDS = """机器学习 环保 春天 母爱 友谊 我的妈妈 家乡 大海 猫 狗 读书 梦想 青春 成长 科技 未来 爱情 秋天 冬天 旅行 美食
健康 运动 安全 诚信 感恩 团队 创新 奋斗 坚持 时间 自然 宇宙 历史 传统文化 中国 城市 乡村 校园 老师 父亲 月亮""".split()


def other_topic():
    r = R.random()
    if r < 0.25:
        return pick(TOPIC_WORDS)
    if r < 0.45:
        return pick(FESTIVALS)
    if r < 0.6:
        return pick(BUSINESSES + PRODUCTS)
    if r < 0.7:
        return pick(POSTER_THEMES + PUBLIC_CAUSES)
    if r < 0.85:
        return pick(ALL_NOUNS)
    return pseudo_word()


def with_topic(kind):
    """写一篇关于春节的作文 / 做个PPT大纲，主题是人工智能 / 海报文案，中秋节的"""
    t = other_topic()
    form = R.randrange(8)
    if form == 0:
        return "关于" + t + "的" + kind
    if form == 1:
        return t + "的" + kind
    if form == 2:
        return kind + pick(["，主题是", "，主题：", "，关于", "，内容是", "，题目是", "，写"]) + t
    if form == 3:
        return kind + "，" + t + "的"
    if form == 4:
        return t + kind
    return kind


DOC_VERBS = ["生成", "做", "帮我做", "帮我生成", "给我做", "出", "制作", "搞", "整", "来", "弄", "帮我弄", "帮忙做", "能不能帮我做",
             "可以帮我生成", "我需要", "我想要", "给我来", "请生成", "麻烦做", "帮我搞", "帮我整理"]
DOC_QTY = ["一个", "一份", "一段", "个", "份", "段", "一套", "", "一张", "一首", "一部"]
DOC_KINDS = """Excel 表格 电子表格 PPT 幻灯片 PPT大纲 演示文稿 Word文档 文档 PDF 视频 短视频 vlog 动画视频 新品介绍视频
宣传片 宣传视频 MV 音乐 背景音乐 BGM 歌曲 铃声 配音 语音 播客 网页 网站 小程序 App 数据分析 报表 简历 问卷 调查问卷
日程表 课程表 预算表 计划表 财务报表 代码 Python脚本 SQL 爬虫 接口文档 会议纪要 周报 月报 工作计划 旅行计划 购物清单
待办清单 考勤表 成绩单 值班表 排班表 教学视频 直播脚本 音频 有声书 电子书 Excel 甘特图模板 目录 索引""".split()
DOC_KIND_QTY = {"视频": ["一段", "一个", "段", "个", ""], "音乐": ["一段", "一首", "段", "首", ""], "歌曲": ["一首", "首"]}

TRANSLATE = ["帮我翻译一下：{e}", "翻译：{e}", "把这段文字翻译成{l}", "把这句话翻译成{l}", "把下面的文字翻译成{l}", "请翻译成{l}",
             "中译英：{c}", "英译中：{e}", "{e}是什么意思", "{c}用{l}怎么说", "{c}翻译成{l}", "帮我把这段翻译成{l}",
             "翻译一下{e}", "这句{l}什么意思", "把这封邮件翻译成{l}", "把“{c}”翻译成{l}", "{e} 翻译一下"]
ENGLISH_PHRASES = ["I need you", "Good morning", "How are you", "Thank you very much", "See you tomorrow", "Happy birthday",
                   "Nice to meet you", "Where is the station", "I miss you", "Keep going", "Never give up", "Long time no see"]
CHINESE_PHRASES = ["我爱你", "早上好", "谢谢你", "生日快乐", "新年快乐", "你吃饭了吗", "好久不见", "加油", "欢迎光临", "一路顺风",
                   "天天开心", "我想你了", "今天天气很好", "这张图很好看"]
LANGUAGES = ["英文", "英语", "日语", "日文", "韩语", "法语", "德语", "西班牙语", "中文", "繁体", "文言文", "粤语"]

TEXT_OPS = ["总结一下", "帮我总结", "概括一下", "提炼一下要点", "润色一下", "改写一下", "缩写成一百字", "扩写一下", "帮我改改",
            "帮我检查一下错别字", "帮我看看语法", "续写一下", "帮我分析一下", "解释一下", "整理成表格", "整理成要点", "改成口语化",
            "改得正式一点", "压缩到两百字以内", "帮我列个提纲", "帮我排个版", "帮我校对一下"]
TEXT_OBJECTS = ["这篇文章", "这段话", "这份报告", "这本书", "会议内容", "这个视频", "这篇论文", "这段文字", "这封邮件", "这个故事",
                "我的简历", "这份合同", "这段代码", "下面的内容", "这条新闻", "这篇作文", "这段歌词", "这份周报", "这几句话", "这个文档"]

CODE = ["写个Python脚本", "写一段JavaScript代码", "帮我debug", "这段代码什么意思", "解释一下这段代码", "写个爬虫", "帮我写个SQL查询",
        "用Rust写个排序", "帮我看看这个报错", "写个正则表达式", "帮我写个批量重命名图片的脚本", "用Python读取Excel", "写个网页登录页面",
        "帮我优化这段代码", "写个计算器程序", "Python怎么安装", "这个报错怎么解决", "帮我写个HTML页面", "写一个贪吃蛇游戏",
        "用代码把图片转成黑白", "写个Python脚本批量压缩图片", "帮我写个接口"]

CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "重庆", "西安", "南京", "武汉", "苏州", "长沙", "厦门", "青岛", "昆明",
          "哈尔滨", "拉萨", "三亚", "天津", "郑州", "我这里", "老家", "东京", "纽约"]
WHEN = ["今天", "明天", "后天", "周末", "这周", "下周", "今晚", "明早", "国庆", "五一", "", ""]
WEATHER = ["天气怎么样", "会下雨吗", "热不热", "冷吗", "有雾霾吗", "气温多少", "适合出门吗", "下雪吗", "刮风吗", "天气如何",
           "要带伞吗", "多少度", "的天气", "空气质量怎么样", "紫外线强吗"]


def maths():
    a, b = R.randint(2, 999), R.randint(2, 99)
    sa, sb = (str(a), str(b)) if R.random() < 0.7 else (pick(["十二", "三十五", "一百二十", "七", "八十八", "二十"]), pick(["三", "九", "十五", "四"]))
    return pick(["帮我算一下{a}乘以{b}", "{a}+{b}等于几", "{a}的平方是多少", "{a}除以{b}是多少", "{a}乘{b}等于多少", "计算一下{a}×{b}",
                 "{a}减{b}是多少", "算一下{a}*{b}", "{a}加{b}", "{a}乘以{b}等于多少？", "帮我算算{a}+{b}", "{a}的{b}%是多少",
                 "根号{a}是多少", "{a}开平方", "解方程 x+{b}={a}", "这道题怎么做：{a}×{b}", "{a}年是闰年吗", "{a}公里是多少米",
                 "{a}美元等于多少人民币", "{a}斤是多少公斤", "一个月{a}块钱，一年多少钱"]).format(a=sa, b=sb)


FACTS = ["{f}的由来是什么", "{f}有什么习俗", "{f}是几月几号", "{f}放几天假", "离{f}还有几天", "{f}吃什么", "{f}为什么要{x}",
         "{c}有什么好玩的", "{c}有什么好吃的", "去{c}玩几天合适", "{c}离{c2}多远", "{a}吃什么", "{a}怎么养", "{a}能活多少年",
         "{a}为什么{y}", "{a}是保护动物吗", "{o}是谁发明的", "{o}是什么时候出现的", "{o}的历史", "{p}一般赚多少钱",
         "怎么成为{p}", "{p}需要什么学历", "现在几点了", "今天几号", "今天星期几", "明年春节是几号", "今天是什么日子",
         "地球有多大", "珠穆朗玛峰多高", "光速是多少", "人为什么要睡觉", "世界上最高的楼是哪栋", "中国有多少个省"]


def fact():
    return pick(FACTS).format(f=pick(FESTIVALS), x=pick(["吃粽子", "赏月", "放鞭炮", "贴春联", "吃饺子", "挂灯笼"]),
                              c=pick(CITIES[:20]), c2=pick(CITIES[:20]), a=pick(FREE_ANIMALS),
                              y=pick(["怕水", "喜欢纸箱", "会冬眠", "掉毛", "晚上叫", "吃竹子"]),
                              o=pick(FREE_OBJECTS + FREE_FOODS), p=pick(PERSON_NOUNS))


LIFE = ["晚饭吃点啥好", "推荐几部好看的动画片", "讲个笑话听听", "给我唱一首歌", "讲个故事", "我好无聊", "周末去哪玩",
        "怎么减肥", "失眠怎么办", "送女朋友什么礼物好", "推荐一本书", "推荐几个旅游景点", "推荐几首好听的歌", "中午吃什么",
        "最近有什么好看的剧", "推荐一款游戏", "怎么学好英语", "考研还是工作", "怎么和领导相处", "怎么哄女朋友开心",
        "给我讲讲{o}的故事", "讲个关于{a}的故事", "{a}和{a2}谁厉害", "推荐几个{p}的纪录片", "讲个睡前故事", "说个冷笑话",
        "来个脑筋急转弯", "给我出道题", "我们来玩成语接龙", "你猜我在想什么", "给我算个命", "今天运势怎么样",
        "帮我做个决定", "陪我玩个游戏", "来首诗", "念首诗给我听", "放首歌", "来段相声", "说句土味情话"]


def life():
    return pick(LIFE).format(o=pick(FREE_OBJECTS + FESTIVALS), a=pick(FREE_ANIMALS), a2=pick(FREE_ANIMALS), p=pick(FREE_ANIMALS))


ASSIST = ["帮我查查快递到哪了", "帮我订一张去{c}的机票", "明天早上七点叫我", "提醒我下午三点开会", "设个闹钟", "打开音乐",
          "帮我发个邮件给老板", "帮我点个外卖", "帮我打个车", "查一下{c}到{c2}的高铁", "帮我订个酒店", "帮我查一下明天的航班",
          "帮我起个{n}名字", "给我的{m}起个名字", "帮我挂个号", "帮我搜一下附近的{b}", "导航到{c}", "帮我查一下{c}的房价",
          "帮我记一下：明天买牛奶", "把这个日程加到日历里", "帮我在淘宝上买个{o}", "查一下今天的新闻", "帮我查个单词",
          "帮我生成一个二维码链接", "生成一个随机数", "帮我生成一个密码", "帮我做个数据分析", "把这个文件转成PDF",
          "帮我把这个表格排序", "把这段音频转成文字", "把这个视频压缩一下", "把这个视频剪短一点", "帮我下载这个视频"]


def assist():
    return pick(ASSIST).format(c=pick(CITIES), c2=pick(CITIES), n=pick(["公司", "店铺", "宝宝", "猫", "狗", "网", "游戏", "公众号",
                                                                    "品牌", "奶茶店", "工作室", "队伍"]),
                               m=pick(["猫", "狗", "店", "公司", "宝宝", "小号", "乐队", "项目", "产品", "公众号", "咖啡馆"]),
                               b=pick(BUSINESSES), o=pick(PRODUCTS + FREE_OBJECTS))


IMAGE_NOUNS = ["海报", "图片", "照片", "logo", "壁纸", "头像", "图标", "背景", "图", "插画", "PPT", "封面", "banner", "贺卡",
               "表情包", "证件照", "设计", "画", "作品", "截图", "美图", "底图", "LOGO"]
THIS = ["这张", "这个", "我的", "我做的", "你画的", "刚才那张", "上一张", "这幅", "我们的", "这套", ""]
META_IMAGE = ["{img}一般用什么尺寸", "{img}用什么字体好", "{img}怎么配色", "{img}设计大概多少钱", "{img}是怎么做出来的",
              "{img}有版权吗", "你觉得{this}{img}怎么样", "{this}{img}好看吗", "{this}{img}是什么风格", "{this}{img}是谁做的",
              "{this}{img}里有什么", "帮我评价一下{this}{img}", "{this}{img}哪里不好", "{this}{img}有什么问题", "{this}{img}能商用吗",
              "{this}{img}用的什么模型", "{this}{img}是AI画的吗", "{this}{img}多大", "{this}{img}的分辨率是多少",
              "{this}{img}是在哪拍的", "{this}{img}在哪里下载", "{this}{img}怎么保存", "{this}{img}为什么这么模糊",
              "{this}{img}为什么打不开", "{this}{img}怎么发给别人", "我喜欢{this}{img}", "{this}{img}不错", "{this}{img}太丑了",
              "{style}风格有什么特点", "{style}和{style2}有什么区别", "什么是{term}", "{term}是什么意思", "{term}怎么用",
              "{term}是什么", "{model}最低要什么显卡", "{model}和{model2}有什么区别", "{model}是免费的吗", "{model}怎么安装",
              "什么样的配色比较高级", "红色和什么颜色搭配好看", "哪种字体适合做{img}", "{img}设计有哪些趋势", "{img}的文案怎么写",
              "好的{img}有什么标准", "AI画的{img}可以商用吗", "识别一下图里的文字", "图片里这是什么花", "这张照片拍得怎么样",
              "图里的人是谁", "这张图里有几个人", "这是什么动物", "看看这张图写的什么", "这张截图说的什么意思",
              "为什么我生成的{img}都很模糊", "为什么画出来的手是畸形的", "上一张图为什么这么暗", "能不能告诉我这张图的提示词"]
TERMS = ["LoRA模型", "IP-Adapter", "扩散模型", "提示词", "负面提示词", "VAE", "CFG", "采样器", "AIGC", "图生图", "inpainting", "分辨率",
         "矢量图", "像素", "DPI", "CMYK", "RGB", "出血线", "seed", "steps", "DPM++", "种子", "重绘幅度", "文生图", "SDXL", "Checkpoint",
         "embedding", "高清修复", "超分", "Real-ESRGAN", "InstructPix2Pix", "tile", "denoise", "CLIP", "UNet", "大模型", "像素风"]
MODELS = ["SDXL", "Stable Diffusion", "Midjourney", "Flux", "DALL-E", "SD1.5", "ComfyUI", "WebUI", "Photoshop", "PS", "Canva",
          "美图秀秀", "剪映", "Lightroom", "醒图", "Procreate"]


def meta_image():
    return pick(META_IMAGE).format(img=pick(IMAGE_NOUNS), this=pick(THIS), style=pick(STYLES), style2=pick(STYLES),
                                   term=pick(TERMS), model=pick(MODELS), model2=pick(MODELS))


FOR_IMAGE_TEXT = ["写", "起", "配", "想", "取", "编", "帮我写", "帮我起", "帮我想", "帮忙配"]
FOR_IMAGE_KINDS = ["个标题", "句标语", "段文案", "个名字", "段描述", "几个标签", "个slogan", "句广告语", "一段介绍", "个文件名",
                   "几句文案", "一句话", "个口号", "段配文", "个主题", "段英文描述", "一首诗", "个故事", "一句祝福语", "个简介"]


def for_image_text():
    """给海报配一句口号 / 写一段端午海报的文案 / 给这张图起个名字"""
    img = pick(IMAGE_NOUNS)
    form = R.choices(range(4), weights=[4, 3, 3, 1])[0]
    if form == 0:
        return pick(["给", "帮", "为", "请给", "帮我给"]) + pick(THIS) + img + pick(FOR_IMAGE_TEXT) + pick(FOR_IMAGE_KINDS)
    if form == 1:
        return pick(["帮我写个", "写一段", "给我来个", "帮我想个", "写几句"]) + img + pick(["文案", "标题", "标语", "配文", "描述",
                                                                               "介绍", "说明", "创意", "提示词"]) + maybe(
            0.5, pick(["，", "，主题是", "，关于"]) + other_topic() + maybe(0.5, "的"))
    if form == 2:
        return other_topic() + img + pick(["的文案", "的标语", "配什么文字好", "写什么字好", "的标题怎么起", "的创意有哪些", "该写什么"])
    return pick(["我要做", "我在做", "我准备做", "老板让我做"]) + pick(["一张", "个", ""]) + other_topic() + img + pick(
        ["，帮我想句标语", "，帮我写段文案", "，给点配色建议", "，有什么创意", "，用什么字体好", "，帮我起个标题",
         "，你觉得放什么元素好", "，应该注意什么", "，怎么排版好看"])


def howto_edit():
    """怎么把天空换成晚霞 (asking how, not asking for it)"""
    return pick(["怎么", "如何", "怎样", "用PS怎么", "手机上怎么", "教我", "在PS里如何", "请问怎么"]) + pick(["把", "将"]) + pick(
        ["图片", "照片", "图里的", "这张图的", ""]) + pick(EI_TARGETS) + (pick(["去掉", "删掉", "抠出来", "变透明"]) if R.random() < 0.3
                                                                  else pick(["换成", "改成", "变成", "调成"]) + pick(EI_CONTENTS)) + pick(
        ["", "？", "呢", "啊"])


def howto_make():
    """怎么画一只猫 / 海报怎么做 / 如何设计一个logo"""
    thing = pick(FREE_ANIMALS + FREE_OBJECTS + PERSON_NOUNS[:60] + [f + "海报" for f in FESTIVALS[:20]] + ["logo", "海报", "头像",
                                                                                                   "壁纸", "图标", "PPT背景"])
    form = R.randrange(4)
    if form == 0:
        return pick(["怎么", "如何", "怎样", "教我", "新手怎么", "想学"]) + pick(["画", "画好", "设计", "做", "画出"]) + pick(
            ["一只", "一个", "一张", ""]) + thing + pick(["", "？", "呢", "比较好看", "才好看", "的步骤"])
    if form == 1:
        return thing + pick(["怎么画", "怎么做", "怎么设计", "怎么画才好看", "的画法", "画法教程", "怎么拍", "的设计思路"]) + pick(["", "？", "呢"])
    if form == 2:
        return pick(["画", "设计", "做"]) + thing + pick(["有什么技巧", "要注意什么", "需要什么软件", "难不难", "要多久", "用什么笔"])
    return pick(["我想学", "想学", "我想自学", "怎么入门", "零基础学"]) + pick(["画画", "摄影", "PS", "设计", "AI绘画", "插画", "素描",
                                                                    "水彩", "书法", "平面设计", "UI设计", "修图"]) + pick(
        ["", "，该从哪入手", "，有什么建议", "，推荐什么课程", "难吗", "要多久"])


def other_sentence():
    kind = R.choices(range(15), weights=[8, 7, 7, 10, 12, 10, 4, 4, 3, 4, 5, 6, 8, 5, 7])[0]
    if kind == 0:
        return pick(GREETINGS) + pick(GREETING_ENDS)
    if kind == 1:
        return pick(TALK) + pick(["", "", "。", "！", "~", "啊", "哈哈", "，谢谢"])
    if kind == 2:
        return pick(ABOUT_ME) + pick(["", "？", "?", "呀", "呢"])
    if kind == 3:
        return pick(HOWTO_PREFIXES) + pick(HOWTO_TASKS) + pick(HOWTO_ENDS)
    if kind == 4:
        kind_ = pick(TEXT_KINDS)
        return pick(TEXT_VERBS) + pick(TEXT_QTY) + (with_topic(kind_) if R.random() < 0.6 else kind_)
    if kind == 5:
        kind_ = pick(DOC_KINDS)
        qty = pick(DOC_KIND_QTY.get(kind_, ["一段", "一个", "段", "个", ""] if any(w in kind_ for w in ("视频", "音", "歌", "MV", "vlog", "BGM", "播客"))
                                    else DOC_QTY))
        return pick(DOC_VERBS) + qty + (with_topic(kind_) if R.random() < 0.5 else kind_)
    if kind == 6:
        return pick(TRANSLATE).format(e=pick(ENGLISH_PHRASES), c=pick(CHINESE_PHRASES), l=pick(LANGUAGES))
    if kind == 7:
        op, obj = pick(TEXT_OPS), pick(TEXT_OBJECTS)
        return pick([op + obj, "帮我把" + obj + op.removeprefix("帮我"), obj + op.removeprefix("帮我"), "请" + op + obj])
    if kind == 8:
        return pick(CODE)
    if kind == 9:
        return pick(WHEN) + pick(CITIES) + pick(WHEN[:4] + ["", "", ""]) + pick(WEATHER)
    if kind == 10:
        return maths()
    if kind == 11:
        return fact() if R.random() < 0.5 else life()
    if kind == 12:
        return meta_image() if R.random() < 0.6 else for_image_text()
    if kind == 13:
        return assist()
    return howto_make() if R.random() < 0.6 else howto_edit()


def other():
    s = Sample("other")
    if R.random() < 0.08:
        s.add(pick(CONTEXT_HEADS))
    if R.random() < 0.15:
        s.add(pick(CHATTER_HEAD))
    text = other_sentence()
    if R.random() < 0.1:
        text += pick(["，", "。", " "]) + other_sentence()
    s.add(text)
    end = pick(["", "", "", "？", "?", "。", "！", "呢"])
    if not text.endswith(("？", "?", "。", "！", "~", "呢", "吗", "：", "…")) and R.random() < 0.3:
        s.add(end)
    tail(s, 0.12)
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


def rare_noise(s, p=0.06):
    """Now and then one character of a slot value becomes a rare one (维京战士 → 缁京战士), so that a
    character the word lists lack does not cut a span short."""
    if R.random() >= p:
        return
    chunks = [c for c in s.chunks if c[1] in ("subject", "target", "content") and len(c[0]) >= 2
              and all("\u4e00" <= ch <= "\u9fff" for ch in c[0])]
    if chunks:
        chunk = pick(chunks)
        i = R.randrange(len(chunk[0]))
        chunk[0] = chunk[0][:i] + rare_char() + chunk[0][i + 1:]


def finish(s):
    if s.question is not None:
        s.add(s.question)
        s.question = None
    rare_noise(s)
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
    parser.add_argument("--per-intent", type=int, default=1500,
                        help="instructions per image intent; `other` gets --other-factor times as many")
    parser.add_argument("--other-factor", type=float, default=1.6)
    args = parser.parse_args()
    R.seed(args.seed)
    seen = set()
    rows = []
    for intent, generator in GENERATORS.items():
        made, attempts = 0, 0
        wanted = round(args.per_intent * (args.other_factor if intent == "other" else 1))
        while made < wanted and attempts < wanted * 50:
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
