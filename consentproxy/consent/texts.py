"""Default labels and descriptions of the consent categories, in the bundled languages.

A site may override any of them per language in its configuration. Only
cookies that are strictly necessary (the consent cookie included) may be
called necessary (EDPB / CNIL guidance).
"""

from __future__ import annotations

DEFAULT_LABELS: dict[str, dict[str, str]] = {
    "necessary": {"nl": "Noodzakelijk", "en": "Necessary", "de": "Notwendig", "fr": "Nécessaires"},
    "preferences": {"nl": "Voorkeuren", "en": "Preferences", "de": "Präferenzen", "fr": "Préférences"},
    "statistics": {"nl": "Statistieken", "en": "Statistics", "de": "Statistiken", "fr": "Statistiques"},
    "marketing": {"nl": "Marketing", "en": "Marketing", "de": "Marketing", "fr": "Marketing"},
}

DEFAULT_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "necessary": {
        "nl": "Nodig om de website te laten werken en uw keuze te onthouden. Deze staan altijd aan.",
        "en": "Needed for the website to work and to remember your choice. These are always on.",
        "de": "Erforderlich, damit die Website funktioniert und Ihre Auswahl gespeichert wird. Immer aktiv.",
        "fr": "Nécessaires au fonctionnement du site et à la mémorisation de votre choix. Toujours actifs.",
    },
    "preferences": {
        "nl": "Onthouden uw instellingen, zoals taal of regio, voor een volgend bezoek.",
        "en": "Remember your settings, such as language or region, for your next visit.",
        "de": "Speichern Ihre Einstellungen, etwa Sprache oder Region, für Ihren nächsten Besuch.",
        "fr": "Mémorisent vos réglages, comme la langue ou la région, pour votre prochaine visite.",
    },
    "statistics": {
        "nl": "Helpen ons te begrijpen hoe bezoekers de website gebruiken, zodat we die kunnen verbeteren.",
        "en": "Help us understand how visitors use the website, so that we can improve it.",
        "de": "Helfen uns zu verstehen, wie Besucher die Website nutzen, damit wir sie verbessern können.",
        "fr": "Nous aident à comprendre comment les visiteurs utilisent le site, afin de l'améliorer.",
    },
    "marketing": {
        "nl": "Worden gebruikt om advertenties te tonen en te meten, ook op andere websites.",
        "en": "Used to show and measure advertising, also on other websites.",
        "de": "Werden verwendet, um Werbung anzuzeigen und zu messen, auch auf anderen Websites.",
        "fr": "Servent à afficher et mesurer de la publicité, y compris sur d'autres sites.",
    },
}

#: who "uses cookies" where a site names no controller and has no plain host name (a `*` or wildcard site)
THIS_WEBSITE = {"nl": "Deze website", "en": "This website", "de": "Diese Website", "fr": "Ce site"}


def controller_name(controller: str, hosts: tuple[str, ...], lang: str) -> str:
    """Who the banner says uses cookies: the configured controller, else the site's first host name as a
    visitor knows it ("www." left out), else "this website" in the visitor's language -- never the internal
    name the configuration gives the site."""
    if controller:
        return controller
    for host in hosts:
        name = host.strip().lower().rstrip(".")
        if name and "*" not in name and not name.replace(".", "").isdigit() and ":" not in name \
                and name != "localhost":
            return name.removeprefix("www.")
    return THIS_WEBSITE[lang]


#: The banner's own texts. `{controller}` is the site's controller name; `{service}` an embed's service.
BANNER_TEXTS: dict[str, dict[str, str]] = {
    "title": {"nl": "Cookies op deze website", "en": "Cookies on this website",
              "de": "Cookies auf dieser Website", "fr": "Les cookies sur ce site"},
    "text": {
        "nl": "{controller} gebruikt noodzakelijke cookies om deze website te laten werken. Met uw toestemming "
              "gebruiken wij en onze partners ook cookies voor voorkeuren, statistieken en marketing. U kunt uw "
              "keuze altijd wijzigen of intrekken.",
        "en": "{controller} uses necessary cookies to make this website work. With your consent, we and our "
              "partners also use cookies for preferences, statistics and marketing. You can change or withdraw "
              "your choice at any time.",
        "de": "{controller} verwendet notwendige Cookies, damit diese Website funktioniert. Mit Ihrer Einwilligung "
              "verwenden wir und unsere Partner auch Cookies für Präferenzen, Statistiken und Marketing. Sie "
              "können Ihre Auswahl jederzeit ändern oder widerrufen.",
        "fr": "{controller} utilise des cookies nécessaires au fonctionnement de ce site. Avec votre accord, nous "
              "et nos partenaires utilisons aussi des cookies de préférences, de statistiques et de marketing. "
              "Vous pouvez modifier ou retirer votre choix à tout moment.",
    },
    "privacy": {"nl": "Privacyverklaring", "en": "Privacy statement", "de": "Datenschutzerklärung",
                "fr": "Politique de confidentialité"},
    "accept_all": {"nl": "Alles accepteren", "en": "Accept all", "de": "Alle akzeptieren", "fr": "Tout accepter"},
    "reject_all": {"nl": "Alles weigeren", "en": "Reject all", "de": "Alle ablehnen", "fr": "Tout refuser"},
    "settings": {"nl": "Instellingen", "en": "Settings", "de": "Einstellungen", "fr": "Paramètres"},
    "reopen": {"nl": "Cookie-instellingen", "en": "Cookie settings", "de": "Cookie-Einstellungen",
               "fr": "Paramètres des cookies"},
    "settings_title": {"nl": "Uw cookie-instellingen", "en": "Your cookie settings",
                       "de": "Ihre Cookie-Einstellungen", "fr": "Vos paramètres de cookies"},
    "settings_intro": {
        "nl": "Kies per categorie of u toestemming geeft. Noodzakelijke cookies staan altijd aan.",
        "en": "Choose for each category whether you consent. Necessary cookies are always on.",
        "de": "Wählen Sie für jede Kategorie, ob Sie einwilligen. Notwendige Cookies sind immer aktiv.",
        "fr": "Choisissez pour chaque catégorie si vous donnez votre accord. Les cookies nécessaires sont "
              "toujours actifs.",
    },
    "save": {"nl": "Keuze opslaan", "en": "Save choices", "de": "Auswahl speichern", "fr": "Enregistrer mes choix"},
    "close": {"nl": "Sluiten", "en": "Close", "de": "Schließen", "fr": "Fermer"},
    "always_on": {"nl": "Altijd aan", "en": "Always on", "de": "Immer aktiv", "fr": "Toujours actifs"},
    "services": {"nl": "Diensten", "en": "Services", "de": "Dienste", "fr": "Services"},
    "cookies": {"nl": "Cookies", "en": "Cookies", "de": "Cookies", "fr": "Cookies"},
    "cookie_name": {"nl": "Naam", "en": "Name", "de": "Name", "fr": "Nom"},
    "provider": {"nl": "Aanbieder", "en": "Provider", "de": "Anbieter", "fr": "Fournisseur"},
    "purpose": {"nl": "Doel", "en": "Purpose", "de": "Zweck", "fr": "Finalité"},
    "lifetime": {"nl": "Bewaartermijn", "en": "Lifetime", "de": "Speicherdauer", "fr": "Durée"},
    "consent_id": {"nl": "Uw toestemmings-ID", "en": "Your consent ID", "de": "Ihre Einwilligungs-ID",
                   "fr": "Votre identifiant de consentement"},
    "receipt": {"nl": "Download uw toestemmingsgeschiedenis", "en": "Download your consent history",
                "de": "Ihren Einwilligungsverlauf herunterladen", "fr": "Télécharger l'historique de vos choix"},
    "withdraw": {"nl": "Toestemming intrekken", "en": "Withdraw consent", "de": "Einwilligung widerrufen",
                 "fr": "Retirer mon consentement"},
    "error": {"nl": "Uw keuze kon niet worden opgeslagen. Probeer het opnieuw.",
              "en": "Your choice could not be saved. Please try again.",
              "de": "Ihre Auswahl konnte nicht gespeichert werden. Bitte versuchen Sie es erneut.",
              "fr": "Votre choix n'a pas pu être enregistré. Veuillez réessayer."},
    "embed_text": {
        "nl": "Deze inhoud wordt geleverd door {service}. Als u die laadt, kan {service} cookies plaatsen en uw "
              "bezoek volgen.",
        "en": "This content is provided by {service}. Loading it lets {service} set cookies and follow your "
              "visit.",
        "de": "Dieser Inhalt wird von {service} bereitgestellt. Wenn Sie ihn laden, kann {service} Cookies "
              "setzen und Ihren Besuch verfolgen.",
        "fr": "Ce contenu est fourni par {service}. En le chargeant, vous permettez à {service} de déposer des "
              "cookies et de suivre votre visite.",
    },
    "embed_load": {"nl": "{service} laden", "en": "Load {service}", "de": "{service} laden",
                   "fr": "Charger {service}"},
    # Where a site configures an opt-out regime (e.g. US states): trackers run until the visitor objects.
    "optout_text": {
        "nl": "{controller} en partners gebruiken cookies voor statistieken en advertenties, wat onder de wet "
              "van uw staat als verkopen of delen van persoonsgegevens kan gelden. U kunt daar bezwaar tegen maken.",
        "en": "{controller} and partners use cookies for statistics and advertising, which the law of your state "
              "may count as selling or sharing personal information. You can opt out.",
        "de": "{controller} und Partner verwenden Cookies für Statistiken und Werbung, was nach dem Recht Ihres "
              "Staates als Verkauf oder Weitergabe personenbezogener Daten gelten kann. Sie können widersprechen.",
        "fr": "{controller} et ses partenaires utilisent des cookies de statistiques et de publicité, ce que la "
              "loi de votre État peut considérer comme une vente ou un partage de données personnelles. Vous "
              "pouvez vous y opposer.",
    },
    "do_not_sell": {"nl": "Mijn persoonsgegevens niet verkopen of delen",
                    "en": "Do not sell or share my personal information",
                    "de": "Meine personenbezogenen Daten nicht verkaufen oder weitergeben",
                    "fr": "Ne pas vendre ni partager mes données personnelles"},
    # Where a site configures a notice-only regime: the visitor is informed, nothing is asked.
    "notice_text": {
        "nl": "{controller} en partners gebruiken cookies voor voorkeuren, statistieken en marketing. In "
              "Instellingen ziet u welke, en kunt u ze uitzetten.",
        "en": "{controller} and partners use cookies for preferences, statistics and marketing. Settings shows "
              "which, and lets you turn them off.",
        "de": "{controller} und Partner verwenden Cookies für Präferenzen, Statistiken und Marketing. Unter "
              "Einstellungen sehen Sie, welche, und können sie abschalten.",
        "fr": "{controller} et ses partenaires utilisent des cookies de préférences, de statistiques et de "
              "marketing. Les paramètres indiquent lesquels et permettent de les désactiver.",
    },
    "ok": {"nl": "Begrepen", "en": "Got it", "de": "Verstanden", "fr": "Compris"},
}

#: How long a cookie lives, in words: unit → language → (one, many)
LIFETIME_UNITS: dict[str, dict[str, tuple[str, str]]] = {
    "second": {"nl": ("seconde", "seconden"), "en": ("second", "seconds"), "de": ("Sekunde", "Sekunden"),
               "fr": ("seconde", "secondes")},
    "minute": {"nl": ("minuut", "minuten"), "en": ("minute", "minutes"), "de": ("Minute", "Minuten"),
               "fr": ("minute", "minutes")},
    "hour": {"nl": ("uur", "uur"), "en": ("hour", "hours"), "de": ("Stunde", "Stunden"), "fr": ("heure", "heures")},
    "day": {"nl": ("dag", "dagen"), "en": ("day", "days"), "de": ("Tag", "Tage"), "fr": ("jour", "jours")},
    "week": {"nl": ("week", "weken"), "en": ("week", "weeks"), "de": ("Woche", "Wochen"),
             "fr": ("semaine", "semaines")},
    "month": {"nl": ("maand", "maanden"), "en": ("month", "months"), "de": ("Monat", "Monate"),
              "fr": ("mois", "mois")},
    "year": {"nl": ("jaar", "jaar"), "en": ("year", "years"), "de": ("Jahr", "Jahre"), "fr": ("an", "ans")},
}
SESSION: dict[str, str] = {"nl": "sessie", "en": "session", "de": "Sitzung", "fr": "session"}
#: lifetimes a source gives without a duration: no end set, several ("varies"), or none known
LIFETIME_WORDS: dict[str, dict[str, str]] = {
    "unlimited": {"nl": "onbeperkt", "en": "unlimited", "de": "unbegrenzt", "fr": "illimitée"},
    "varies": {"nl": "wisselend", "en": "varies", "de": "unterschiedlich", "fr": "variable"},
    "unknown": {"nl": "onbekend", "en": "unknown", "de": "unbekannt", "fr": "inconnue"},
}
#: The purpose of a cookie known only from the Open Cookie Database (whose descriptions are English), said
#: from its consent category in the visitor's language: what any cookie of that category is for.
CATEGORY_PURPOSES: dict[str, dict[str, str]] = {
    "necessary": {
        "nl": "Noodzakelijk: laat de website werken, bijvoorbeeld beveiliging of uw sessie.",
        "en": "Necessary: makes the website work, for example security or your session.",
        "de": "Notwendig: lässt die Website funktionieren, etwa Sicherheit oder Ihre Sitzung.",
        "fr": "Nécessaire : fait fonctionner le site, par exemple la sécurité ou votre session.",
    },
    "preferences": {
        "nl": "Voorkeuren: onthoudt uw instellingen, zoals taal of regio.",
        "en": "Preferences: remembers your settings, such as language or region.",
        "de": "Präferenzen: speichert Ihre Einstellungen, etwa Sprache oder Region.",
        "fr": "Préférences : mémorise vos réglages, comme la langue ou la région.",
    },
    "statistics": {
        "nl": "Statistieken: meet hoe bezoekers de website gebruiken.",
        "en": "Statistics: measures how visitors use the website.",
        "de": "Statistiken: misst, wie Besucher die Website nutzen.",
        "fr": "Statistiques : mesure comment les visiteurs utilisent le site.",
    },
    "marketing": {
        "nl": "Marketing: herkent uw browser om advertenties te tonen en te meten, ook op andere websites.",
        "en": "Marketing: recognises your browser to show and measure ads, also on other websites.",
        "de": "Marketing: erkennt Ihren Browser wieder, um Werbung anzuzeigen und zu messen, auch auf anderen "
              "Websites.",
        "fr": "Marketing : reconnaît votre navigateur pour afficher et mesurer des publicités, y compris sur "
              "d'autres sites.",
    },
}
#: The purpose of the consent cookie itself, listed among the necessary cookies.
CONSENT_COOKIE_PURPOSE: dict[str, str] = {
    "nl": "Onthoudt uw keuze over cookies.",
    "en": "Remembers your cookie choice.",
    "de": "Speichert Ihre Cookie-Auswahl.",
    "fr": "Mémorise votre choix concernant les cookies.",
}
