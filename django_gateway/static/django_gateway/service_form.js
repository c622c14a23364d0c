/*
 * The service form shows what applies to the choices made: the Consul fieldset for Consul
 * discovery (the targets for static discovery), the hashing fields for consistent hashing, and
 * the header or cookie name for the hash input that needs one. A part holding an error always
 * stays visible. Without JavaScript, everything shows.
 */
'use strict';
{
    function show(element, visible) {
        if (element && !(element.querySelector('.errorlist') && !visible)) {
            element.classList.toggle('hidden', !visible);
        }
    }

    function row(form, field) {
        const input = form.querySelector('[name="' + field + '"]');
        return input && input.closest('.form-row');
    }

    function update(form) {
        const value = (name) => (form.querySelector('[name="' + name + '"]') || {}).value;
        const consul = value('discovery') === 'consul';
        const hashing = value('load_balancing') === 'consistent_hash';
        for (const fieldset of form.querySelectorAll('fieldset.gateway-consul')) {
            show(fieldset, consul);
        }
        show(document.getElementById('targets-group'), !consul);
        show(row(form, 'hash_on'), hashing);
        show(row(form, 'hash_on_header'), hashing && value('hash_on') === 'header');
        show(row(form, 'hash_on_cookie'), hashing && value('hash_on') === 'cookie');
    }

    document.addEventListener('DOMContentLoaded', function() {
        const form = document.querySelector('#service_form');
        if (!form) {
            return;
        }
        update(form);
        form.addEventListener('change', function(event) {
            if (['discovery', 'load_balancing', 'hash_on'].includes(event.target.name)) {
                update(form);
            }
        });
    });
}
