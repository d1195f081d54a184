"""The hosted checkout page's words in English, French, German and Spanish (amounts and
currencies are Babel's, per the full locale). ``text_for(locale)`` picks the language of a
Babel locale id (``fr_CA`` -> French), English when the page has no words in it."""

from __future__ import annotations

__all__ = ["LANGUAGES", "text_for"]

_EN = {
    "done_title": "Done",
    "continue": "Continue",
    "title": "Checkout",
    "pay_to": "Pay {merchant}",
    "save_card_for": "Save a card with {merchant}",
    "item": "Item",
    "qty": "Qty",
    "amount": "Amount",
    "total": "Total",
    "pay_button_hint": "Your card details go to the payment provider's own form below; "
    "this page never sees them.",
    "save_hint": "Your card is saved for later payments; nothing is charged now.",
    "card_form": "Card form",
    "pay_heading": "Pay {amount}",
    "save_heading": "Save your card",
    "paying": "Paying…",
    "processing": "Processing… The payment is being confirmed.",
    "redirecting": "Redirecting…",
    "failed": "The payment did not go through. Try another card.",
    "network": "The payment could not be sent. Try again.",
    "rate_limited": "Too many payment tries. Wait a few minutes, then try again.",
    "auth_failed": "The card's authentication failed. Try again or use another card.",
    "back": "Back to {merchant}",
    "expired_title": "This checkout has expired",
    "expired_text": "This checkout session is no longer open. Nothing was charged.",
    "missing_title": "Checkout not found",
    "missing_text": "This checkout link is not valid. Ask the merchant for a new one.",
    "test_mode": "Test mode: no real money moves.",
    "not_payable": "This checkout cannot take a card here.",
}
_FR = {
    "done_title": "Terminé",
    "continue": "Continuer",
    "title": "Paiement",
    "pay_to": "Payer {merchant}",
    "save_card_for": "Enregistrer une carte chez {merchant}",
    "item": "Article",
    "qty": "Qté",
    "amount": "Montant",
    "total": "Total",
    "pay_button_hint": "Les données de votre carte vont au formulaire du prestataire de "
    "paiement ci-dessous ; cette page ne les voit jamais.",
    "save_hint": "Votre carte est enregistrée pour des paiements ultérieurs ; rien n'est "
    "débité maintenant.",
    "card_form": "Formulaire de carte",
    "pay_heading": "Payer {amount}",
    "save_heading": "Enregistrer votre carte",
    "paying": "Paiement en cours…",
    "processing": "Traitement… Le paiement est en cours de confirmation.",
    "redirecting": "Redirection…",
    "failed": "Le paiement n'a pas abouti. Essayez une autre carte.",
    "network": "Le paiement n'a pas pu être envoyé. Réessayez.",
    "rate_limited": "Trop de tentatives de paiement. Patientez quelques minutes, puis réessayez.",
    "auth_failed": "L'authentification de la carte a échoué. Réessayez ou utilisez une "
    "autre carte.",
    "back": "Retour à {merchant}",
    "expired_title": "Ce paiement a expiré",
    "expired_text": "Cette session de paiement n'est plus ouverte. Rien n'a été débité.",
    "missing_title": "Paiement introuvable",
    "missing_text": "Ce lien de paiement n'est pas valide. Demandez-en un nouveau au marchand.",
    "test_mode": "Mode test : aucun argent réel n'est déplacé.",
    "not_payable": "Ce paiement ne peut pas être réglé par carte ici.",
}
_DE = {
    "done_title": "Erledigt",
    "continue": "Weiter",
    "title": "Bezahlen",
    "pay_to": "{merchant} bezahlen",
    "save_card_for": "Karte bei {merchant} speichern",
    "item": "Artikel",
    "qty": "Menge",
    "amount": "Betrag",
    "total": "Gesamt",
    "pay_button_hint": "Ihre Kartendaten gehen an das Formular des Zahlungsanbieters unten; "
    "diese Seite sieht sie nie.",
    "save_hint": "Ihre Karte wird für spätere Zahlungen gespeichert; jetzt wird nichts belastet.",
    "card_form": "Kartenformular",
    "pay_heading": "{amount} bezahlen",
    "save_heading": "Karte speichern",
    "paying": "Zahlung läuft…",
    "processing": "Wird verarbeitet… Die Zahlung wird bestätigt.",
    "redirecting": "Weiterleitung…",
    "failed": "Die Zahlung ist nicht durchgegangen. Versuchen Sie eine andere Karte.",
    "network": "Die Zahlung konnte nicht gesendet werden. Versuchen Sie es erneut.",
    "rate_limited": "Zu viele Zahlungsversuche. Warten Sie einige Minuten und versuchen "
    "Sie es dann erneut.",
    "auth_failed": "Die Authentifizierung der Karte ist fehlgeschlagen. Versuchen Sie es "
    "erneut oder nutzen Sie eine andere Karte.",
    "back": "Zurück zu {merchant}",
    "expired_title": "Dieser Bezahlvorgang ist abgelaufen",
    "expired_text": "Diese Sitzung ist nicht mehr offen. Es wurde nichts belastet.",
    "missing_title": "Bezahlvorgang nicht gefunden",
    "missing_text": "Dieser Link ist ungültig. Bitten Sie den Händler um einen neuen.",
    "test_mode": "Testmodus: Es wird kein echtes Geld bewegt.",
    "not_payable": "Dieser Bezahlvorgang nimmt hier keine Karte an.",
}
_ES = {
    "done_title": "Listo",
    "continue": "Continuar",
    "title": "Pago",
    "pay_to": "Pagar a {merchant}",
    "save_card_for": "Guardar una tarjeta en {merchant}",
    "item": "Artículo",
    "qty": "Cant.",
    "amount": "Importe",
    "total": "Total",
    "pay_button_hint": "Los datos de su tarjeta van al formulario del proveedor de pagos "
    "de abajo; esta página nunca los ve.",
    "save_hint": "Su tarjeta se guarda para pagos posteriores; no se cobra nada ahora.",
    "card_form": "Formulario de tarjeta",
    "pay_heading": "Pagar {amount}",
    "save_heading": "Guardar su tarjeta",
    "paying": "Pagando…",
    "processing": "Procesando… El pago se está confirmando.",
    "redirecting": "Redirigiendo…",
    "failed": "El pago no se ha realizado. Pruebe con otra tarjeta.",
    "network": "No se pudo enviar el pago. Inténtelo de nuevo.",
    "rate_limited": "Demasiados intentos de pago. Espere unos minutos y vuelva a intentarlo.",
    "auth_failed": "La autenticación de la tarjeta ha fallado. Inténtelo de nuevo o use "
    "otra tarjeta.",
    "back": "Volver a {merchant}",
    "expired_title": "Este pago ha caducado",
    "expired_text": "Esta sesión de pago ya no está abierta. No se ha cobrado nada.",
    "missing_title": "Pago no encontrado",
    "missing_text": "Este enlace de pago no es válido. Pida uno nuevo al comercio.",
    "test_mode": "Modo de prueba: no se mueve dinero real.",
    "not_payable": "Este pago no puede hacerse con tarjeta aquí.",
}
LANGUAGES: dict[str, dict[str, str]] = {"en": _EN, "fr": _FR, "de": _DE, "es": _ES}


def text_for(locale: str) -> tuple[str, dict[str, str]]:
    """(language, its words) for a Babel locale id."""
    language = locale.split("_", 1)[0].lower()
    if language not in LANGUAGES:
        language = "en"
    return language, LANGUAGES[language]
