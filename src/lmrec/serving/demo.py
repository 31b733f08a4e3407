"""The demo shop: a small bilingual catalog and plausible shoppers, generated deterministically.

`generate_catalog()` composes 320 items in ten categories (running shoes, kitchen knives, tea,
headphones, books, camping gear, phone cases, coffee, toys, skincare) from hand-written
vocabularies: a brand, a product line and a product type make the title, a feature and a use
make a one-sentence description, and a quarter of each category is written in Chinese. Brands
are invented. The result is committed as `lmrec/serving/data/demo_catalog.jsonl`;
`python -m lmrec.serving.demo` rewrites it, and a test checks the two agree.

`seed_demo(engine_or_store)` loads the catalog and generates users with one or two category
interests who browse with a funnel: views, some of which become clicks, some clicks go to the
cart, some carts are bought.

Example:
    >>> items = demo_catalog()
    >>> len(items), len({i.categories[0] for i in items})
    (320, 10)
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lmrec.stores.records import EventRecord, ItemRecord

__all__ = ["CATEGORIES", "generate_catalog", "demo_catalog", "demo_events", "seed_demo", "CATALOG_PATH"]

CATALOG_PATH = Path(__file__).parent / "data" / "demo_catalog.jsonl"
ITEMS_PER_CATEGORY = 32
CHINESE_PER_CATEGORY = 8

# Each category: id prefix, Chinese category name, price range (CNY), brands, product lines and
# product types. A type carries its own features and uses, so a description always fits its
# title: an English title is "<brand> <line> <Type>", a Chinese one "<品牌><类型>"; a description
# is "<feature>, <use>." / "<特点>，<用途>。".
T = tuple[str, tuple[str, ...], tuple[str, ...]]
CATEGORIES: dict[str, dict[str, Any]] = {
    "running-shoes": {
        "prefix": "shoe", "zh": "跑步鞋", "price": (299, 1299),
        "brands": ["Stridewell", "Kinetic Pace", "TrailFox", "Aerolite", "Northbound"],
        "lines": ["Glide 3", "Tempo", "Ridge", "Cloudstep", "Velocity 9", "Summit", "Daily Miles"],
        "types": [
            ("men's lightweight running shoe", ("Breathable knit upper and a springy foam midsole",
                                               "Barely-there 210 g build with a snappy ride"),
             ("for daily training runs", "for fast 5K and 10K sessions")),
            ("women's cushioned road running shoe", ("Plush foam stack and a soft padded collar",
                                                    "Soft landings with a smooth heel-to-toe roll"),
             ("for easy recovery miles", "for long Sunday runs")),
            ("waterproof trail running shoe", ("Grippy lugged outsole with a rock plate",
                                              "Waterproof membrane and a gusseted tongue"),
             ("for muddy forest trails", "for wet mountain paths")),
            ("carbon-plate racing shoe", ("Featherweight mesh with a responsive carbon plate",
                                         "Aggressive rocker and high-rebound foam"),
             ("for marathon race day", "for chasing a new personal best")),
            ("stability running shoe", ("Firm medial support that tames overpronation",
                                       "Guide rails that keep every stride steady"),
             ("for runners who need extra support", "for high-mileage training weeks")),
            ("wide-fit walking and running sneaker", ("Roomy toe box and a cushioned insole",
                                                     "Wide platform with a stable, low heel"),
             ("for long walks in the city", "for all-day comfort on your feet")),
        ],
        "zh_brands": ["迅影", "步云", "疾风", "远途"],
        "zh_types": [
            ("男士轻便跑步鞋", ("网面透气，中底回弹有力", "鞋身轻盈，脚感灵活"), ("适合日常训练跑步", "适合晨跑和夜跑")),
            ("女士缓震慢跑鞋", ("厚底缓震，落地柔软", "鞋垫柔软，包裹舒适"), ("适合长距离慢跑", "适合健身房跑步机")),
            ("防水越野跑鞋", ("大底抓地，配有防石板", "防水鞋面，雨天不湿脚"), ("适合山地越野", "适合雨天户外跑")),
            ("碳板竞速跑鞋", ("超轻鞋面，碳板推进", "高回弹中底，助力提速"), ("适合马拉松比赛", "适合冲击个人最好成绩")),
            ("透气网面运动鞋", ("网面透气，夏天不闷脚", "百搭配色，轻便耐穿"), ("适合学生日常运动", "适合通勤和休闲")),
            ("宽楦健步运动鞋", ("鞋头宽松，足弓支撑稳定", "软底防滑，走路不累"), ("适合中老年健步走", "适合长时间站立和步行")),
        ],
    },
    "kitchen-knives": {
        "prefix": "knife", "zh": "厨房刀具", "price": (89, 1599),
        "brands": ["Hanamura", "Steelcraft", "Bladesmith & Co", "Kiri", "Oakhaven"],
        "lines": ["Classic", "Damascus Pro", "Everyday", "Heritage", "Shinobi", "Chef Series"],
        "types": [
            ("8-inch chef's knife", ("Forged high-carbon stainless steel with a full tang",
                                    "Razor-sharp 15-degree edge and a balanced bolster"),
             ("for slicing meat and vegetables", "for the home cook who wants one knife for everything")),
            ("Japanese santoku knife", ("67-layer Damascus steel blade", "Hollow-ground edge that keeps food from sticking"),
             ("for quick, precise vegetable prep", "for thin slices of fish and meat")),
            ("serrated bread knife", ("Deep scalloped serrations that never tear the crumb",
                                     "Long 10-inch blade with an ergonomic handle"),
             ("for crusty sourdough loaves", "for cakes and soft brioche")),
            ("paring knife", ("Nimble 3.5-inch blade with a pointed tip", "Compact blade that fits the hand"),
             ("for peeling fruit and fine garnishes", "for small, detailed cutting jobs")),
            ("nakiri vegetable knife", ("Flat rectangular blade for clean push cuts", "Thin hand-sharpened edge"),
             ("for chopping vegetables and herbs", "for stir-fry prep")),
            ("6-piece knife block set", ("Six forged knives in a solid walnut block",
                                        "Matching stainless blades with a built-in sharpener"),
             ("for a fully equipped kitchen", "for a housewarming gift")),
        ],
        "zh_brands": ["锋匠", "十八子作", "匠心", "利刃坊"],
        "zh_types": [
            ("不锈钢厨师刀", ("高碳不锈钢锻打，刀刃锋利耐用", "刀身平衡，切割省力"), ("适合切肉切菜", "适合家庭厨房日常使用")),
            ("日式三德刀", ("大马士革纹钢，切菜不粘", "刀刃轻薄，切片均匀"), ("适合处理蔬菜和鱼肉", "适合精细刀工")),
            ("中式菜刀", ("刀身宽厚，拍蒜剁馅都方便", "传统锻打工艺，经久耐用"), ("适合中式家常菜", "适合切剁两用")),
            ("锋利水果刀", ("小巧刀身，削皮灵活", "不锈钢刀刃，不易生锈"), ("适合处理水果", "适合宿舍和办公室")),
            ("厨房刀具七件套", ("全套刀具配实木刀座", "刀具齐全，配有磨刀器"), ("适合新家厨房", "适合送礼")),
        ],
    },
    "tea": {
        "prefix": "tea", "zh": "茶叶", "price": (39, 699),
        "brands": ["Misty Peak", "Jade Leaf", "Teahouse No. 9", "Cloud Garden", "Old Harbor"],
        "lines": ["Reserve", "Spring Harvest", "Daily", "First Flush", "Estate"],
        "types": [
            ("loose-leaf green tea", ("Hand-picked leaves from high mountain gardens", "Fresh grassy aroma and a sweet finish"),
             ("for a calm afternoon break", "for everyday brewing at the office")),
            ("aged pu-erh tea cake", ("A smooth, earthy cup that deepens with age", "Compressed 357 g cake of sun-dried leaves"),
             ("for gongfu-style brewing", "for collectors of aged teas")),
            ("Darjeeling black tea", ("Muscatel notes and a bright, brisk taste", "Whole leaves from a single estate"),
             ("for a classic breakfast cup", "for afternoon tea with milk")),
            ("jasmine pearl tea", ("Green tea rolled into pearls and scented with jasmine", "Floral aroma that fills the room"),
             ("for a fragrant evening cup", "for glass teapot brewing")),
            ("chamomile herbal tea bags", ("Caffeine-free blend with a mellow honey note", "Whole chamomile flowers in biodegradable bags"),
             ("for winding down before bed", "for a soothing caffeine-free drink")),
            ("ceremonial matcha powder", ("Stone-ground shade-grown leaves", "Vivid green powder with a rich umami taste"),
             ("for whisked matcha and lattes", "for baking and smoothies")),
        ],
        "zh_brands": ["云雾山", "茗香居", "老茶号", "清风茶园"],
        "zh_types": [
            ("明前龙井绿茶", ("高山茶园手工采摘，香气清雅", "嫩芽鲜爽，汤色清亮"), ("适合办公室冲泡", "适合春季品饮")),
            ("云南普洱茶饼", ("陈香醇厚，回甘持久", "古树原料，越陈越香"), ("适合功夫茶品鉴", "适合收藏")),
            ("武夷山大红袍", ("岩韵明显，焙火香浓", "条索紧结，耐冲泡"), ("适合功夫茶品鉴", "适合送礼")),
            ("茉莉花茶", ("花香浓郁，口感鲜爽", "七窨工艺，香气持久"), ("适合日常饮用", "适合夏季冷泡")),
            ("安溪铁观音", ("兰花香明显，回甘清甜", "颗粒紧实，汤色金黄"), ("适合日常饮用", "适合招待客人")),
            ("正山小种红茶", ("松烟香独特，口感醇和", "汤色红艳，甜润顺滑"), ("适合冬季暖胃", "适合调制奶茶")),
        ],
    },
    "headphones": {
        "prefix": "audio", "zh": "耳机", "price": (129, 2999),
        "brands": ["SonicWave", "Auralis", "Beatline", "Quietude", "Nimbus Audio"],
        "lines": ["Studio", "Air", "Pro X", "Roam", "Pulse"],
        "types": [
            ("noise-cancelling over-ear headphones", ("Adaptive noise cancelling and 30-hour battery life",
                                                     "Plush memory-foam ear cushions and a folding frame"),
             ("for flights and commuting", "for focused work in open offices")),
            ("true wireless earbuds", ("Bluetooth 5.3 with a pocket-sized charging case",
                                      "Six microphones for clear calls"),
             ("for commuting and calls", "for music on the go")),
            ("open-back studio headphones", ("Balanced 50 mm drivers for accurate mixing",
                                            "Replaceable velour pads and a detachable cable"),
             ("for home recording and mixing", "for critical listening")),
            ("bone-conduction sports headphones", ("Open-ear design that keeps you aware of traffic",
                                                  "Sweat-proof titanium band"),
             ("for running and cycling", "for gym workouts")),
            ("gaming headset with microphone", ("7.1 surround sound and a noise-cancelling boom mic",
                                               "Low-latency wireless dongle"),
             ("for long gaming sessions", "for team chat in online games")),
        ],
        "zh_brands": ["声悦", "听澜", "静界", "律动"],
        "zh_types": [
            ("头戴式降噪耳机", ("主动降噪，续航长达三十小时", "记忆棉耳罩，久戴不累"), ("适合通勤和出差", "适合在家专注工作")),
            ("真无线蓝牙耳机", ("蓝牙连接稳定，低延迟", "小巧充电仓，随身携带"), ("适合通勤听歌", "适合接打电话")),
            ("运动骨传导耳机", ("开放双耳，运动更安全", "防汗防水，佩戴稳固"), ("适合跑步骑行", "适合运动健身")),
            ("电竞游戏耳机", ("环绕立体声，听声辨位", "降噪麦克风，语音清晰"), ("适合打游戏", "适合网课和会议")),
        ],
    },
    "books": {
        "prefix": "book", "zh": "图书", "price": (29, 198),
        "brands": ["Lantern Press", "Northwind Books", "Harbor House", "Blue Quill"],
        "lines": ["", "Illustrated", "Paperback", "Hardcover"],
        "types": [
            ("mystery novel set in a seaside town", ("A gripping plot with a twist you won't see coming",
                                                    "Atmospheric whodunit with a sharp-witted detective"),
             ("for readers who love a page-turner", "for a cosy weekend read")),
            ("beginner's guide to Python programming", ("Clear explanations and hands-on exercises",
                                                       "Step-by-step projects from variables to web apps"),
             ("for students and self-learners", "for anyone starting to code")),
            ("history of the Silk Road", ("Richly researched and vividly told", "Maps and stories of traders, monks and empires"),
             ("for curious minds", "for history lovers")),
            ("cookbook of weeknight family dinners", ("Simple recipes with everyday ingredients",
                                                     "Thirty-minute meals with full-colour photos"),
             ("for busy home cooks", "for feeding a family on weeknights")),
            ("science fiction space opera", ("An epic voyage across a galaxy at war", "Bold ideas and unforgettable characters"),
             ("for fans of big science fiction", "for a long holiday read")),
            ("field guide to garden birds", ("Full-colour illustrations on every page", "Songs, nests and seasons of 200 species"),
             ("for birdwatchers of all ages", "for walks in the park")),
        ],
        "zh_brands": ["文渊出版社", "青灯书局", "知行出版"],
        "zh_types": [
            ("悬疑推理小说", ("情节紧凑，悬念迭起", "结局反转，令人拍案"), ("适合周末阅读", "适合推理爱好者")),
            ("零基础学编程入门", ("讲解清晰，配有大量练习", "从零开始，案例丰富"), ("适合自学入门", "适合大学生")),
            ("中国历史通俗读物", ("图文并茂，通俗易懂", "史料翔实，故事生动"), ("适合历史爱好者", "适合青少年阅读")),
            ("家常菜谱大全", ("菜谱简单，食材常见", "步骤详细，配有成品图"), ("适合厨房新手", "适合全家做饭")),
            ("科幻长篇小说", ("想象宏大，情节跌宕", "硬核设定，引人深思"), ("适合科幻迷", "适合假期阅读")),
            ("儿童科普绘本", ("色彩鲜艳，知识有趣", "问答形式，激发好奇心"), ("适合亲子共读", "适合三到八岁儿童")),
        ],
    },
    "camping": {
        "prefix": "camp", "zh": "露营装备", "price": (59, 2499),
        "brands": ["Wildcrest", "Basecamp Co", "Pinewood Outfitters", "Summitline", "Trailhaus"],
        "lines": ["Ultralight", "Family", "Expedition", "Weekender", "Explorer"],
        "types": [
            ("2-person backpacking tent", ("Packs down small and sets up in minutes", "Rip-stop nylon with taped waterproof seams"),
             ("for weekend trips in the mountains", "for long-distance hiking")),
            ("down sleeping bag", ("Rated to minus ten degrees with 800-fill down", "Compresses to the size of a water bottle"),
             ("for cold nights under the stars", "for winter camping")),
            ("inflatable sleeping pad", ("Insulated air chambers and a built-in pump", "Ten centimetres of cushioning"),
             ("for a good night's sleep outdoors", "for car camping and backpacking")),
            ("portable camping stove", ("Boils a litre of water in three minutes", "Folding pot supports and piezo ignition"),
             ("for cooking at the campsite", "for hot coffee on the trail")),
            ("folding camp chair", ("Sturdy aluminium frame that folds flat", "Breathable mesh back and a cup holder"),
             ("for family car camping", "for music festivals and picnics")),
            ("LED camping lantern", ("Rechargeable battery with three brightness modes", "Warm light that doubles as a power bank"),
             ("for evenings at the campsite", "for power cuts at home")),
        ],
        "zh_brands": ["野径", "山野", "营地家"],
        "zh_types": [
            ("双人户外帐篷", ("轻量便携，搭建快速", "防风防雨，双层设计"), ("适合周末露营", "适合登山徒步")),
            ("加厚防寒睡袋", ("羽绒填充，保暖性好", "压缩收纳，体积小巧"), ("适合冬季露营", "适合高海拔徒步")),
            ("便携折叠露营椅", ("铝合金支架，承重稳固", "一秒折叠，收纳方便"), ("适合户外野餐", "适合钓鱼和看演出")),
            ("户外野营炉具", ("火力强劲，烧水快速", "防风设计，点火方便"), ("适合野外做饭", "适合自驾游")),
            ("充电露营灯", ("亮度可调，续航持久", "可当充电宝使用"), ("适合营地夜晚照明", "适合家庭应急")),
        ],
    },
    "phone-cases": {
        "prefix": "case", "zh": "手机壳", "price": (19, 299),
        "brands": ["ArmorShell", "Clearline", "Pocketcraft", "Gripster", "Lumen Cases"],
        "lines": ["Slim", "Rugged", "MagFit", "Eco", "Crystal"],
        "types": [
            ("clear case for iPhone 15", ("Crystal-clear back that never yellows", "Slim profile with raised camera edges"),
             ("for showing off the phone's colour", "for everyday scratches")),
            ("shockproof rugged case for Galaxy S24", ("Military-grade drop protection with raised edges",
                                                      "Dual-layer shell with a built-in kickstand"),
             ("for hikers and builders", "for clumsy hands")),
            ("leather wallet phone case", ("Genuine leather with three card slots", "Magnetic flip cover that doubles as a stand"),
             ("for leaving the wallet at home", "for business travel")),
            ("magnetic MagSafe-compatible case", ("Strong built-in magnets for wireless charging", "Matte finish that resists fingerprints"),
             ("for car mounts and wireless chargers", "for everyday protection")),
            ("biodegradable phone case", ("Plant-based material that composts at end of life", "Soft-touch finish in earthy colours"),
             ("for a lower-waste everyday carry", "for eco-minded shoppers")),
        ],
        "zh_brands": ["护甲", "简壳", "晶透"],
        "zh_types": [
            ("透明防摔手机壳", ("四角气囊防摔，边框加高", "高透材质，久用不发黄"), ("适合日常保护手机", "适合展示手机原色")),
            ("磁吸保护手机壳", ("支持磁吸无线充电", "磨砂手感，不留指纹"), ("适合车载支架", "适合日常使用")),
            ("真皮翻盖手机套", ("头层牛皮，带卡槽", "翻盖可当支架"), ("适合商务人士", "适合出门不带钱包")),
            ("硅胶软壳带挂绳", ("亲肤手感，防滑耐脏", "可拆卸挂绳，方便携带"), ("适合学生党", "适合户外出行")),
        ],
    },
    "coffee": {
        "prefix": "coffee", "zh": "咖啡", "price": (49, 1999),
        "brands": ["Roastwell", "Bean & Barrow", "Morning Ritual", "Crema Lab", "Highland Roasters"],
        "lines": ["House Blend", "Single Origin", "Barista", "Cold Brew", "Espresso"],
        "types": [
            ("whole bean medium roast coffee", ("Notes of chocolate, caramel and toasted nuts", "Freshly roasted in small batches"),
             ("for a rich morning cup", "for drip and French press")),
            ("Ethiopian Yirgacheffe light roast", ("Bright citrus acidity and a floral aroma", "Washed single-origin beans"),
             ("for slow weekend pour-overs", "for tasting flights")),
            ("dark roast espresso beans", ("Bold body with a thick crema", "Smoky cocoa notes that cut through milk"),
             ("for espresso and milk drinks", "for home baristas")),
            ("pour-over coffee dripper set", ("Heat-resistant borosilicate glass", "Ceramic dripper with a gooseneck kettle"),
             ("for slow weekend brewing", "for a clean, bright cup")),
            ("burr coffee grinder", ("Conical steel burrs with 40 grind settings", "Quiet motor and a static-free catch cup"),
             ("for fresh grounds every morning", "for espresso to cold brew")),
            ("cold brew coffee maker", ("Fine mesh filter in a one-litre pitcher", "Steeps overnight in the fridge"),
             ("for iced coffee on hot days", "for smooth, low-acid coffee")),
        ],
        "zh_brands": ["晨焙", "豆语", "云南咖农"],
        "zh_types": [
            ("云南小粒咖啡豆", ("新鲜烘焙，香气浓郁", "口感顺滑，带有坚果风味"), ("适合早晨提神", "适合手冲")),
            ("意式浓缩咖啡豆", ("深度烘焙，油脂丰富", "巧克力风味，适合加奶"), ("适合在家做拿铁", "适合意式咖啡机")),
            ("手冲咖啡壶套装", ("耐热玻璃，易于清洗", "细口壶控水精准"), ("适合咖啡爱好者入门", "适合周末慢生活")),
            ("家用磨豆机", ("研磨均匀，粗细可调", "低噪音电机"), ("适合每天现磨咖啡", "适合办公室")),
            ("冷萃咖啡杯", ("冷水慢萃，口感清爽", "过滤网细密，无残渣"), ("适合夏天冰咖啡", "适合上班带杯")),
        ],
    },
    "toys": {
        "prefix": "toy", "zh": "玩具", "price": (29, 899),
        "brands": ["Brightblock", "Tiny Tinkers", "Playwell", "Wonderwood", "Starship Kids"],
        "lines": ["Junior", "Builder", "Discovery", "Classic", "Creator"],
        "types": [
            ("wooden building blocks set", ("Smooth, non-toxic painted beech wood", "100 chunky pieces in a storage box"),
             ("for toddlers aged 2 and up", "for open-ended creative play")),
            ("remote control racing car", ("Rechargeable battery and 2.4 GHz remote", "Shock-absorbing wheels for rough ground"),
             ("for backyard races", "for birthday gifts")),
            ("STEM robot building kit", ("Programmable with a simple app for kids", "Motors, sensors and 300 snap-fit parts"),
             ("for curious young engineers", "for learning to code through play")),
            ("plush teddy bear", ("Super-soft fabric that survives the wash", "Hand-stitched face and a huggable size"),
             ("for bedtime cuddles", "for a newborn gift")),
            ("500-piece jigsaw puzzle", ("Thick pieces with a linen finish", "A bright harbour scene with a poster guide"),
             ("for rainy family afternoons", "for puzzle lovers")),
            ("toy kitchen playset", ("Working lights, sounds and a ticking oven", "Pots, pans and play food included"),
             ("for pretend play", "for little chefs aged 3 and up")),
        ],
        "zh_brands": ["乐趣屋", "童梦", "积木王"],
        "zh_types": [
            ("儿童积木拼装玩具", ("环保材质，安全无毒", "大颗粒设计，不易误吞"), ("适合三岁以上儿童", "适合亲子互动")),
            ("遥控越野赛车", ("充电续航，操控灵敏", "减震轮胎，耐摔耐撞"), ("适合生日礼物", "适合户外玩耍")),
            ("编程机器人套装", ("寓教于乐，锻炼动手能力", "图形化编程，简单易学"), ("适合启蒙早教", "适合小学生")),
            ("毛绒玩具熊", ("柔软亲肤，可机洗", "做工精细，抱着舒服"), ("适合哄睡安抚", "适合送给小朋友")),
            ("益智拼图", ("图案精美，拼接紧密", "难度适中，锻炼专注力"), ("适合家庭娱乐", "适合儿童益智")),
        ],
    },
    "skincare": {
        "prefix": "skin", "zh": "护肤品", "price": (49, 1299),
        "brands": ["Dewbloom", "Pure Botanica", "Lumière Skin", "Calm Ritual", "Aqua Veil"],
        "lines": ["Hydra", "Gentle", "Radiance", "Barrier Repair", "Daily"],
        "types": [
            ("hyaluronic acid moisturizer", ("Lightweight, fragrance-free formula", "Ceramides that restore the skin barrier"),
             ("for dry and dehydrated skin", "for morning and night")),
            ("vitamin C brightening serum", ("Packed with antioxidants and niacinamide", "Stable 15% vitamin C in a dropper bottle"),
             ("for a brighter, even tone", "for fading dark spots")),
            ("gentle foaming cleanser", ("Amino-acid surfactants that never strip", "Dermatologist-tested for sensitive skin"),
             ("for daily face washing", "for sensitive and combination skin")),
            ("SPF 50 mineral sunscreen", ("Non-greasy finish with no white cast", "Water-resistant zinc oxide formula"),
             ("for daily sun protection", "for beach days and sports")),
            ("retinol night cream", ("Encapsulated retinol with soothing peptides", "Rich texture that works overnight"),
             ("for an overnight repair routine", "for fine lines")),
            ("soothing aloe sheet mask", ("Cooling aloe and centella essence", "Soft cotton sheet soaked in serum"),
             ("for calming skin after sun", "for a quick pre-party glow")),
        ],
        "zh_brands": ["水润坊", "植萃", "肌初"],
        "zh_types": [
            ("玻尿酸保湿面霜", ("清爽不油腻，快速吸收", "深层补水，锁住水分"), ("适合干性肌肤", "适合秋冬季节")),
            ("维C精华液", ("提亮肤色，淡化痘印", "抗氧化，改善暗沉"), ("适合熬夜后修护", "适合日常护肤")),
            ("氨基酸洗面奶", ("温和无刺激，敏感肌可用", "泡沫细腻，洗后不紧绷"), ("适合日常洁面", "适合油性肌肤")),
            ("防晒霜SPF50", ("清爽不油腻，不泛白", "防水防汗，持久防护"), ("适合夏季防晒", "适合户外运动")),
            ("补水面膜", ("精华充足，敷后水润", "舒缓镇静，改善干燥"), ("适合晒后修护", "适合每周护理")),
        ],
    },
}


def _title_en(rng: random.Random, c: dict[str, Any]) -> tuple[str, T]:
    kind = rng.choice(c["types"])
    words = (rng.choice(c["brands"]), rng.choice(c["lines"]), kind[0][0].upper() + kind[0][1:])
    return " ".join(w for w in words if w), kind


def _title_zh(rng: random.Random, c: dict[str, Any]) -> tuple[str, T]:
    kind = rng.choice(c["zh_types"])
    return f"{rng.choice(c['zh_brands'])}{kind[0]}", kind


def generate_catalog(seed: int = 0) -> list[ItemRecord]:
    """The demo catalog: `ITEMS_PER_CATEGORY` items per category, the last
    `CHINESE_PER_CATEGORY` of each in Chinese; deterministic for a seed."""
    rng = random.Random(seed)
    out: list[ItemRecord] = []
    for cat, c in CATEGORIES.items():
        seen: set[str] = set()
        for n in range(ITEMS_PER_CATEGORY):
            chinese = n >= ITEMS_PER_CATEGORY - CHINESE_PER_CATEGORY
            for _ in range(1000):  # titles are drawn until unique within the category
                title, kind = _title_zh(rng, c) if chinese else _title_en(rng, c)
                if title not in seen:
                    break
            else:  # pragma: no cover - the vocabularies are large enough
                raise RuntimeError(f"{cat}: ran out of distinct titles")
            seen.add(title)
            if chinese:
                text = f"{rng.choice(kind[1])}，{rng.choice(kind[2])}。"
                brand = next(b for b in c["zh_brands"] if title.startswith(b))
                categories, language = (cat, c["zh"]), "zh"
            else:
                text = f"{rng.choice(kind[1])}, {rng.choice(kind[2])}."
                brand = next(b for b in c["brands"] if title.startswith(b))
                categories, language = (cat,), "en"
            lo, hi = c["price"]
            price = round(rng.uniform(lo, hi)) - 0.01  # shop prices end in .99
            out.append(ItemRecord(f"{c['prefix']}-{n + 1:03d}", title=title, text=text, categories=categories,
                                  attributes={"brand": brand, "price": float(round(price, 2)), "currency": "CNY",
                                              "language": language}))
    return out


def write_catalog(path: Path = CATALOG_PATH, seed: int = 0) -> Path:
    """Write `generate_catalog(seed)` as JSON lines (what is committed as package data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({k: v for k, v in asdict(r).items() if k not in ("created_at", "updated_at")},
                        ensure_ascii=False, sort_keys=True) for r in generate_catalog(seed)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def demo_catalog(path: Path = CATALOG_PATH) -> list[ItemRecord]:
    """The committed demo catalog as `ItemRecord`s."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            out.append(ItemRecord(row["item_id"], title=row["title"], text=row["text"],
                                  categories=tuple(row["categories"]), attributes=row["attributes"],
                                  available=row.get("available", True)))
        except KeyError as e:
            raise ValueError(f"{path}:{n}: missing field {e.args[0]!r}") from None
    return out


def demo_events(items: Sequence[ItemRecord], n_users: int = 200, seed: int = 0, *,
                end: float | None = None, days: float = 30.0) -> list[EventRecord]:
    """Browsing sessions of `n_users` users over the `days` before `end` (default now).

    Each user has one or two favourite categories (85% of their views; the rest anywhere),
    views 8-40 items (popular items of a category more often: Zipf-like weights), clicks 35%
    of views, puts 30% of clicks in the cart and buys half of those. Events of a user are in
    time order; deterministic for a seed and `end`.
    """
    rng = random.Random(seed)
    end = time.time() if end is None else float(end)
    start = end - days * 86400.0
    by_cat: dict[str, list[ItemRecord]] = {}
    for it in items:
        by_cat.setdefault(it.categories[0] if it.categories else "", []).append(it)
    cats = sorted(by_cat)
    weights = {c: [1.0 / (r + 1) ** 0.8 for r in range(len(v))] for c, v in by_cat.items()}
    events: list[EventRecord] = []
    for u in range(n_users):
        user = f"demo-u{u + 1:04d}"
        likes = rng.sample(cats, k=min(len(cats), rng.choice((1, 1, 2))))
        t = rng.uniform(start, end - 3600.0)
        for _ in range(rng.randint(8, 40)):
            cat = rng.choice(likes) if rng.random() < 0.85 else rng.choice(cats)
            item = rng.choices(by_cat[cat], weights=weights[cat])[0]
            t = min(t + rng.expovariate(1 / 600.0), end)
            events.append(EventRecord(user, item.item_id, "view", 1.0, t))
            for kind, p in (("click", 0.35), ("cart", 0.30), ("purchase", 0.5)):
                if rng.random() >= p:
                    break
                t = min(t + rng.uniform(5.0, 120.0), end)
                events.append(EventRecord(user, item.item_id, kind, 1.0, t))
    events.sort(key=lambda e: (e.timestamp, e.user_id))
    return events


def seed_demo(engine_or_store: Any, n_users: int = 200, seed: int = 0, *, end: float | None = None,
              batch_size: int = 1000) -> dict[str, Any]:
    """Load the demo catalog and `demo_events` into an `Engine` (through `upsert_items` /
    `ingest`, so its online state follows) or a `RecordStore`; returns what was written."""
    items = demo_catalog()
    events = demo_events(items, n_users, seed, end=end)
    if hasattr(engine_or_store, "ingest"):
        engine_or_store.upsert_items(items)
        write = engine_or_store.ingest
    else:
        engine_or_store.upsert_items(items)
        write = engine_or_store.append_events
    for s in range(0, len(events), batch_size):
        write(events[s:s + batch_size])
    kinds = Counter(e.kind for e in events)
    return {"items": len(items), "users": len({e.user_id for e in events}), "events": len(events),
            "by_kind": dict(sorted(kinds.items()))}


if __name__ == "__main__":  # pragma: no cover
    print(f"wrote {write_catalog()}")
