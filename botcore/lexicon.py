"""Words that mean the same thing, or nearly, in what people ask a bot.

A bot owner writes a few samples per dialogue; people ask with other
words: "fee" for "price", "lift" for "elevator", "stop" for "cancel".  Each
line below is a group of words that stand for one another in everyday
questions to a business, whatever the business.  A word may be in more
than one group.  Groups are kept tight: words that are merely about the
same subject ("train" and "bus", "dog" and "vet") stay apart, since a
question about the one is often out of scope for a bot about the other.

Words are normalised and stemmed like any text (botcore.matching), so one
form of a word stands for its inflections.
"""

from __future__ import annotations

ENGLISH_GROUPS = """
price prices pricing cost costs fee fees charge rate rates tariff fare
discount discounts deal deals offer offers sale sales promotion promo coupon
cheap cheaper affordable inexpensive budget discount
open opening hours closing closed close
cancel cancellation terminate quit unsubscribe end stop
pause freeze suspend hold
book booking reserve reservation
appointment appointments slot slots
change modify reschedule move edit update amend alter switch
upgrade downgrade change switch
deliver delivery ship shipping shipment dispatch postage courier
refund refunds reimburse reimbursement repay
broken broke damaged damage defective faulty cracked torn ripped
crash crashes crashing bug glitch error freezes malfunction
lost lose missing misplaced found
contact call phone telephone ring email reach
human person agent staff representative operator employee
job jobs vacancy vacancies position positions career careers recruitment
rent rental hire lease
login signin logon log
password passcode pin
register registration signup enrol enroll join
address location located directions situated
parking park carpark
pay payment payments paying paid
invoice invoices bill bills billing
card visa mastercard amex debit contactless paypal klarna applepay
size sizes sizing fit fits measurements
stock available availability restock inventory
wash washing clean cleaning laundry launder
warranty guarantee
repair fix mend
gift present
child children kid kids baby babies toddler son daughter
teen teens teenager teenagers youth junior
pet pets animal animals dog dogs cat cats
restaurant cafe cafeteria dining bistro
food meal meals eat eating
breakfast lunch dinner supper
gym fitness workout exercise
elevator lift
wheelchair accessible accessibility disabled disability
wifi internet wireless
toilet toilets bathroom restroom wc loo
luggage baggage suitcase suitcases
schedule timetable
class classes course courses lesson lessons workshop
trainer instructor coach teacher
room rooms bedroom suite
accommodation lodging overnight
student students pupil pupils
senior seniors pensioner pensioners elderly retired
receipt receipts invoice
order orders purchase purchases
track tracking trace
complaint complaints complain feedback
afraid scared fear nervous anxious anxiety frightened
fast quick quickly rapid speedy express
heating heater radiator temperature aircon
injury injured hurt pain painful sore ache
sick ill unwell poorly
doctor physician gp
medicine medication medications meds pill pills
birthday party celebration
clothes clothing outfit attire
bike bikes bicycle bicycles
car cars vehicle vehicles automobile
photo photos photograph picture pictures filming film video
free complimentary gratis
smoke smoking vape vaping cigarette cigarettes
wallet purse
phone mobile cellphone smartphone
abroad international overseas worldwide foreign
"""

NORWEGIAN_GROUPS = """
pris priser prisen kostnad kostnader koste koster takst
gebyr avgift
rabatt rabatter tilbud kampanje salg avslag
billig billigere rimelig rimeligere rabatt
åpningstider åpningstid åpent åpen åpne åpner stenger stengt stenge
avbestille avbestilling kansellere avlyse avslutte oppsigelse
pause fryse frys
bestille bestilling booke booking reservere reservasjon
endre endring flytte bytte forandre
levering levere frakt forsendelse sende porto
refusjon refundere tilbakebetaling
ødelagt ødelagte knust defekt
mistet miste glemt glemte savnet forsvunnet
kontakt kontakte ringe telefon telefonnummer epost mail
person menneske ansatt medarbeider
jobb jobbe stilling stillinger arbeid karriere
leie utleie leige
logge innlogging pålogging
passord pinkode
registrere registrering innmelding påmelding
adresse beliggenhet veibeskrivelse
parkering parkere parkeringsplass
betale betaling faktura regning
kort bankkort kredittkort visa vipps
størrelse størrelser passform
lager utsolgt tilgjengelig
vaske vask rengjøre rengjøring
garanti reklamasjon reklamere
reparere reparasjon fikse
barn unger ungen sønn datter baby babyer småbarn
ungdom ungdommer tenåring
kjæledyr dyr hund hunder katt katter
restaurant kafe kafé kantine servering
mat spise måltid
frokost lunsj middag kveldsmat
trening trene treningssenter
heis løfte
rullestol rullestolbruker tilrettelagt
wifi internett trådløst
toalett toaletter wc do
bagasje koffert kofferter
timeplan tidtabell ruteplan rutetider
kurs klasse klasser
student studenter elev elever
honnør pensjonist pensjonister eldre
kvittering kvitteringer faktura
ordre bestilling kjøp
spore sporing
klage klager tilbakemelding misfornøyd
redd engstelig nervøs grue gruer bekymret
rask raskt fort kjapt ekspress
vondt smerte smerter verk verke verker pine
syk sykdom
lege doktor
medisin medisiner tablett tabletter
bursdag fest feiring selskap
klær tøy antrekk
sykkel sykler
bil biler kjøretøy
bilde bilder foto film filme video
gratis kostnadsfritt
røyke røyking snus
lommebok
mobil mobiltelefon telefon
utlandet utland utenlands internasjonal
"""

GROUPS_OF_LANGUAGE = {
    "en": ENGLISH_GROUPS,
    "no": NORWEGIAN_GROUPS,
    "nb": NORWEGIAN_GROUPS,
    "nn": NORWEGIAN_GROUPS,
}


def word_groups(language: str) -> list[str]:
    """Return the groups of related words of a base language code."""
    return GROUPS_OF_LANGUAGE.get(language, "").strip().splitlines()
