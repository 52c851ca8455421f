-- Peaks and insights from rows already read (#18). v_peaks and v_insights read the views they
-- rank (v_hour_of_day, v_day_of_week, v_month, v_kpis, product, category, price band and age
-- group performance) again, and PostgreSQL computes a view once per mention: the gateway's
-- snapshot, which also reads each of those views for its own keys, computed hour of day four
-- times and v_cart_hours eleven times (8.1 ms a read on the run.sh database, a third of
-- PostgreSQL's CPU time at 5,000 events/s). Their logic is now two functions of those views'
-- rows, so a reader that already holds the rows (the snapshot) passes them in, and the two
-- views pass in the views' rows themselves: one definition, the same rows. They read no table
-- and run as the caller.

-- The peak of each seasonal dimension by events and by revenue (v_peaks).
CREATE FUNCTION public.cartflow_peaks(hod v_hour_of_day[], dow v_day_of_week[], mon v_month[])
RETURNS TABLE (dimension text, measure text, peak text, value numeric)
LANGUAGE sql STABLE AS $$
(SELECT 'hour of day', 'events', hour_of_day::text, events::numeric FROM unnest(hod) WHERE events > 0
 ORDER BY events DESC, hour_of_day LIMIT 1)
UNION ALL
(SELECT 'hour of day', 'revenue', hour_of_day::text, revenue FROM unnest(hod)
 WHERE revenue > 0 ORDER BY revenue DESC, hour_of_day LIMIT 1)
UNION ALL
(SELECT 'day of week', 'events', day, events FROM unnest(dow) WHERE events > 0
 ORDER BY events DESC, iso_day_of_week LIMIT 1)
UNION ALL
(SELECT 'day of week', 'revenue', day, revenue FROM unnest(dow) WHERE revenue > 0
 ORDER BY revenue DESC, iso_day_of_week LIMIT 1)
UNION ALL
(SELECT 'month', 'events', month_name, events FROM unnest(mon) WHERE events > 0
 ORDER BY events DESC, month LIMIT 1)
UNION ALL
(SELECT 'month', 'revenue', month_name, revenue FROM unnest(mon) WHERE revenue > 0
 ORDER BY revenue DESC, month LIMIT 1)
$$;

-- Findings for raising conversion (v_insights; V6 says how they are chosen and ranked).
CREATE FUNCTION public.cartflow_insights(k v_kpis, cats v_category_performance[],
    prods v_product_performance[], bands v_abandonment_by_price_band[],
    hod v_hour_of_day[], ages v_age_groups[])
RETURNS TABLE (rank int, finding text, subject text, value_at_stake numeric, evidence text)
LANGUAGE sql STABLE AS $$
WITH top_category AS (
    SELECT * FROM unnest(cats) WHERE abandoned_value > 0
    ORDER BY abandoned_value DESC, category LIMIT 1
), top_product AS (
    SELECT * FROM unnest(prods) WHERE abandoned_value > 0
    ORDER BY abandoned_value DESC, product_id LIMIT 1
), f AS (
    SELECT 'category losing the most value' AS finding, category AS subject,
           abandoned_value AS value_at_stake,
           format('%s items abandoned of %s kept in carts (%s, item level), worth %s',
                  items_abandoned, adds - removes,
                  cartflow_percent(items_abandoned, adds - removes), abandoned_value) AS evidence
    FROM top_category
    UNION ALL
    SELECT 'product losing the most value', title, abandoned_value,
           format('%s items abandoned of %s kept in carts (%s, item level), worth %s',
                  items_abandoned, adds - removes,
                  cartflow_percent(items_abandoned, adds - removes), abandoned_value)
    FROM top_product
    UNION ALL
    (SELECT 'product with the most adds not bought', title, abandoned_value,
            format('%s added, %s bought (%s of adds), %s left unbought in carts, worth %s',
                   adds, purchases, cartflow_percent(purchases, adds), items_abandoned,
                   abandoned_value)
     FROM unnest(prods)
     WHERE adds > purchases AND product_id NOT IN (SELECT product_id FROM top_product)
     ORDER BY adds - purchases DESC, product_id LIMIT 1)
    UNION ALL
    (SELECT 'price band with the highest item abandonment rate', band, abandoned_value,
            format('%s of the %s items kept in carts are abandoned (%s, item level), against %s overall; worth %s',
                   items_abandoned, adds - removes, cartflow_percent(items_abandoned, adds - removes),
                   cartflow_percent((k).item_abandoned, (k).adds - (k).removes),
                   abandoned_value)
     FROM unnest(bands) WHERE adds > removes
     ORDER BY item_abandonment_rate DESC, band_floor LIMIT 1)
    UNION ALL
    (SELECT 'hour of day with the most carts abandoned', hour_of_day || ':00 UTC',
            abandoned_value,
            format('%s of the %s carts started in that hour were abandoned (%s, cart level), worth %s',
                   abandoned_carts, carts, cartflow_percent(abandoned_carts, carts),
                   abandoned_value)
     FROM unnest(hod) WHERE abandoned_carts > 0
     ORDER BY abandoned_carts DESC, hour_of_day LIMIT 1)
    UNION ALL
    (SELECT 'age group with the lowest cart-to-purchase rate', age_group, abandoned_value,
            format('%s of its %s carts were bought (%s), against %s overall; %s left unbought in its carts',
                   purchased_carts, carts, cartflow_percent(purchased_carts, carts),
                   cartflow_percent((k).purchased_carts, (k).carts), abandoned_value)
     FROM unnest(ages) WHERE carts > 0 AND age_group <> 'unknown'
     ORDER BY cart_to_purchase_rate, age_group LIMIT 1)
    UNION ALL
    (SELECT 'category with the highest add-to-purchase rate', category, NULL::numeric,
            format('%s of %s adds bought (%s), worth %s', purchases, adds,
                   cartflow_percent(purchases, adds), revenue)
     FROM unnest(cats)
     WHERE adds > 0 AND category NOT IN (SELECT category FROM top_category)
     ORDER BY add_to_purchase_rate DESC, category LIMIT 1)
    UNION ALL
    (SELECT 'hour of day with the most events', hour_of_day || ':00 UTC', NULL::numeric,
            format('%s of %s events (%s) fall in that hour of day', events,
                   (k).events, cartflow_percent(events, (k).events))
     FROM unnest(hod) WHERE events > 0
     ORDER BY events DESC, hour_of_day LIMIT 1)
)
SELECT (row_number() OVER (ORDER BY value_at_stake DESC NULLS LAST, finding))::int AS rank,
       finding, subject, value_at_stake, evidence
FROM f
$$;

ALTER FUNCTION public.cartflow_create_views() RENAME TO cartflow_create_views_v14;

CREATE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
PERFORM public.cartflow_create_views_v14();

CREATE OR REPLACE VIEW v_peaks AS
SELECT * FROM public.cartflow_peaks(
    ARRAY(SELECT v FROM v_hour_of_day v), ARRAY(SELECT v FROM v_day_of_week v),
    ARRAY(SELECT v FROM v_month v));

CREATE OR REPLACE VIEW v_insights AS
SELECT * FROM public.cartflow_insights(
    (SELECT k FROM v_kpis k), ARRAY(SELECT v FROM v_category_performance v),
    ARRAY(SELECT v FROM v_product_performance v), ARRAY(SELECT v FROM v_abandonment_by_price_band v),
    ARRAY(SELECT v FROM v_hour_of_day v), ARRAY(SELECT v FROM v_age_groups v));

END;
$fn$;

SELECT public.cartflow_create_views();
