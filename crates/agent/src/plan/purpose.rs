//! What a poster is for, read from the instruction's words: a festival greeting, a sale,
//! a recruitment drive, a product launch, a public campaign, an event, or none of these.
//! Each purpose has its own template wording (`{purpose}` in scenes.toml), so festive
//! words appear only on festival posters: not on days of remembrance (清明, 悼念), and not
//! where the user asks for a quiet look (不要太喜庆, 高级不俗气).

/// The purposes, in the order they are tried: a 中秋促销 poster is a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Sale,
    Recruitment,
    Product,
    Memorial,
    Festival,
    Campaign,
    Event,
    General,
}

const SALE: &[&str] = &[
    "促销",
    "大促",
    "打折",
    "折扣",
    "特惠",
    "特价",
    "优惠",
    "秒杀",
    "满减",
    "清仓",
    "团购",
    "限时",
    "抢购",
    "双十一",
    "双11",
    "双十二",
    "双12",
    "618",
    "年货节",
    "购物节",
    "降价",
    "买一送一",
    "会员日",
    "福利",
    "折起",
    "甩卖",
    "促销季",
];
const RECRUITMENT: &[&str] = &[
    "招聘",
    "招募",
    "招新",
    "诚聘",
    "纳新",
    "招人",
    "招生",
    "加入我们",
    "求贤",
    "招工",
];
const PRODUCT: &[&str] = &[
    "新品", "上市", "产品", "商品", "主图", "首发", "新款", "上新", "发售", "推新",
];
const FESTIVAL: &[&str] = &[
    "春节",
    "新春",
    "新年",
    "元旦",
    "除夕",
    "元宵",
    "端午",
    "中秋",
    "国庆",
    "七夕",
    "情人节",
    "圣诞",
    "重阳",
    "腊八",
    "冬至",
    "母亲节",
    "父亲节",
    "教师节",
    "儿童节",
    "六一",
    "妇女节",
    "女神节",
    "三八",
    "劳动节",
    "五一",
    "感恩节",
    "万圣节",
    "植树节",
    "建军节",
    "建党",
    "青年节",
    "小年",
    "立春",
    "立夏",
    "立秋",
    "立冬",
    "春分",
    "秋分",
    "夏至",
    "谷雨",
    "小满",
    "芒种",
    "小暑",
    "大暑",
    "处暑",
    "白露",
    "寒露",
    "霜降",
    "小雪",
    "大雪",
    "小寒",
    "大寒",
    "惊蛰",
    "雨水",
    "祝福",
    "拜年",
    "贺卡",
    "贺岁",
    "节日",
    "节快乐",
    "生日",
    "纪念日",
    "新婚",
    "满月",
    "寿宴",
    "贺寿",
    "护士节",
    "记者节",
    "老人节",
    "龙年",
    "蛇年",
    "马年",
    "虎年",
    "兔年",
    "年画",
    "过年",
    "贺图",
    "祝寿",
];
/// Days of remembrance and mourning: solemn, never festive.
const MEMORIAL: &[&str] = &[
    "清明",
    "寒衣节",
    "中元",
    "悼念",
    "哀悼",
    "缅怀",
    "追思",
    "祭奠",
    "祭祖",
    "扫墓",
    "公祭",
    "默哀",
    "纪念馆",
];
/// Negated looks that rule out the festival wording's celebration and rich colours.
const QUIET: &[&str] = &[
    "festive",
    "celebrat",
    "lively",
    "garish",
    "gaudy",
    "tacky",
    "flashy",
    "saturated",
    "rich color",
    "loud",
];
const CAMPAIGN: &[&str] = &[
    "宣传",
    "公益",
    "倡议",
    "倡导",
    "安全",
    "防",
    "禁",
    "环保",
    "文明",
    "垃圾分类",
    "反诈",
    "消防",
    "节水",
    "节约",
    "献血",
    "健康",
    "卫生",
    "戒烟",
    "禁毒",
    "普法",
    "法治",
    "廉洁",
    "保护",
    "关爱",
    "光盘",
    "低碳",
    "防疫",
    "科普",
    "提醒",
    "警示",
    "呼吁",
    "守护",
];
const EVENT: &[&str] = &[
    "开业",
    "活动",
    "讲座",
    "比赛",
    "大赛",
    "展览",
    "展会",
    "演唱会",
    "音乐节",
    "年会",
    "晚会",
    "邀请函",
    "请柬",
    "发布会",
    "峰会",
    "论坛",
    "会议",
    "运动会",
    "开学",
    "毕业",
    "典礼",
    "庆典",
    "周年庆",
    "派对",
    "聚会",
    "市集",
    "沙龙",
    "路演",
    "开幕",
    "报名",
];

impl Purpose {
    /// The purpose of a poster instruction (normalised text).
    pub fn of(text: &str) -> Purpose {
        let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
        [
            (Purpose::Sale, SALE),
            (Purpose::Recruitment, RECRUITMENT),
            (Purpose::Product, PRODUCT),
            (Purpose::Memorial, MEMORIAL),
            (Purpose::Festival, FESTIVAL),
            (Purpose::Campaign, CAMPAIGN),
            (Purpose::Event, EVENT),
        ]
        .into_iter()
        .find(|(_, words)| has(words))
        .map_or(Purpose::General, |(purpose, _)| purpose)
    }

    /// The template words for `{purpose}`.
    pub fn wording(self) -> &'static str {
        match self {
            Purpose::Sale => {
                "sale promotion poster, eye-catching commercial layout, bold graphic design"
            }
            Purpose::Recruitment => {
                "recruitment poster, hiring, professional modern layout, clean graphic design"
            }
            Purpose::Product => {
                "product advertising poster, product showcase, commercial design, clean layout"
            }
            Purpose::Memorial => {
                "remembrance poster, solemn serene atmosphere, restrained elegant design"
            }
            Purpose::Festival => "festive greeting poster, celebratory atmosphere, rich colors",
            Purpose::Campaign => {
                "public awareness campaign poster, clear message, clean graphic design"
            }
            Purpose::Event => "event poster, modern graphic design, eye-catching layout",
            Purpose::General => "poster design, bold composition, clean graphic layout",
        }
    }

    /// The wording when the user negated `negatives` (English, as the writer put them):
    /// a festival poster asked not to be festive or garish gets a quiet festival wording.
    pub fn wording_avoiding(self, negatives: &[String]) -> &'static str {
        let quiet = negatives.iter().any(|negative| {
            let negative = negative.to_lowercase();
            QUIET.iter().any(|look| negative.contains(look))
        });
        match self {
            Purpose::Festival if quiet => {
                "festival poster, elegant understated design, refined soft colors"
            }
            _ => self.wording(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn festive_words_only_for_festivals() {
        assert_eq!(Purpose::of("元宵祝福图"), Purpose::Festival);
        assert_eq!(Purpose::of("中秋促销海报"), Purpose::Sale);
        assert_eq!(Purpose::of("交通安全宣传海报"), Purpose::Campaign);
        assert_eq!(Purpose::of("公司招聘海报"), Purpose::Recruitment);
        assert_eq!(Purpose::of("新品奶茶上市"), Purpose::Product);
        assert_eq!(Purpose::of("年会邀请函"), Purpose::Event);
        assert_eq!(Purpose::of("一张海报"), Purpose::General);
        for purpose in [
            Purpose::Sale,
            Purpose::Recruitment,
            Purpose::Product,
            Purpose::Memorial,
            Purpose::Campaign,
            Purpose::Event,
            Purpose::General,
        ] {
            assert!(!purpose.wording().contains("festive"), "{purpose:?}");
            assert!(!purpose.wording().contains("celebrat"), "{purpose:?}");
        }
    }

    #[test]
    fn remembrance_and_quiet_festivals_get_no_festive_words() {
        assert_eq!(Purpose::of("寒衣节海报，蜡烛和菊花"), Purpose::Memorial);
        assert_eq!(Purpose::of("缅怀先烈海报"), Purpose::Memorial);
        let quiet = Purpose::Festival.wording_avoiding(&["too festive".into()]);
        assert!(
            !quiet.contains("festive") && !quiet.contains("celebrat"),
            "{quiet}"
        );
        let garish = Purpose::Festival.wording_avoiding(&["tacky, gaudy".into()]);
        assert!(!garish.contains("rich colors"), "{garish}");
        assert_eq!(
            Purpose::Festival.wording_avoiding(&["text".into()]),
            Purpose::Festival.wording()
        );
    }
}
